"""Looking into models: recording attention, loading other models' weights, using a trained run.

* :mod:`~attnlab.inspection.record` — ``record_attention`` and building the attention document from a recording
* :mod:`~attnlab.inspection.interop` — weights to and from ``torch.nn`` Transformer modules
* :mod:`~attnlab.inspection.pretrained` — pretrained encoders (MiniLM) in attnlab's own blocks
* :mod:`~attnlab.inspection.inference` — ``Translator``: a run loaded from disk that translates and records

The document format itself lives in :mod:`attnlab.document` (no torch needed to read it).
"""
