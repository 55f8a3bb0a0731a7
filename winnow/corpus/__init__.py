"""winnow.corpus"""
