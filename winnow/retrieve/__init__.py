"""winnow.retrieve"""
