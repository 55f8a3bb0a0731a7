"""winnow.evaluate"""
