"""winnow.index"""
