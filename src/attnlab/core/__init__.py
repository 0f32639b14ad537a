"""The lecture, one chapter a file: what a Transformer *is*.

* :mod:`~attnlab.core.attention` — scaled dot-product and additive attention, multi-head attention, masks, the KV cache
* :mod:`~attnlab.core.positional` — sinusoidal, learned, none, RoPE and ALiBi behind one interface
* :mod:`~attnlab.core.blocks` — the encoder and decoder blocks (post-LN and pre-LN) and the feed-forward sublayer
* :mod:`~attnlab.core.model` — encoder–decoder, encoder-only and decoder-only models and their config
* :mod:`~attnlab.core.decoding` — greedy and beam search with the KV cache
* :mod:`~attnlab.core.rnn` — the GRU + Bahdanau attention baseline the lecture starts from

Nothing here knows about training, files or figures; everything else builds on it.
"""
