"""Running winnow's heavy stages across the workers of a Ray cluster (the ``ray`` extra).

- :mod:`winnow.scale.cluster`: connect to a cluster, or start a local one on the loopback address.
- :mod:`winnow.scale.ray_encode`: :class:`~winnow.scale.ray_encode.RayEncoder`, a bi-encoder whose document
  encoding runs on Ray Data (``map_batches`` with one model-holding actor per worker); a collection
  takes it through ``Collection.open(..., encoder_for=...)`` and commits as it always does.
- :mod:`winnow.scale.rerank_run`: reranking a TREC run's candidates for many queries, in this process
  or across a cluster (``winnow rerank-run``).

Nothing here imports Ray until a function that needs it runs. docs/scale.md is the deployment guide.
"""
