"""winnow.models"""
