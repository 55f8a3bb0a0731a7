"""winnow.encode"""
