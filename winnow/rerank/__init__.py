"""winnow.rerank"""
