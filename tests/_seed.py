"""The seed check from issue 2 (all-MiniLM-L6-v2, cosine): shared by test_models and test_collection."""

SEED_DOCS = [
    "Python is a high-level, interpreted programming language known for its readability.",
    "Machine learning is a subset of artificial intelligence that learns from data.",
    "Neural networks are computing systems inspired by biological neural networks.",
    "Deep learning uses neural networks with many layers to extract features from data.",
    "Natural language processing helps computers understand human language.",
    "Python libraries like PyTorch and TensorFlow are used for deep learning.",
    "BM25 is a bag-of-words retrieval function used in information retrieval.",
    "Vector search finds documents by measuring similarity in embedding space.",
    "Reranking refines initial search results with a more complex model.",
    "Hybrid search combines multiple retrieval methods to improve search quality.",
]
SEED_QUERY = "How is Python used in machine learning?"
SEED_TOP5 = [(1, 0.6194), (6, 0.6004), (2, 0.5793), (4, 0.4139), (5, 0.4065)]  # (1-based doc number, score)
