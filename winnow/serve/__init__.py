"""winnow.serve"""
