"""winnow.train"""
