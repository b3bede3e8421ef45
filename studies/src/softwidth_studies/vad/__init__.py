"""The voice activity detection case study: models, training study, evaluation, peers and streaming detection.

Detecting speech, in the shape Silero VAD users know (:mod:`softwidth_studies.vad.timestamps`)::

    from softwidth_studies.vad import get_speech_timestamps, load
    model = load()                                      # the shipped streaming CRNN
    get_speech_timestamps(audio, model, return_seconds=True)   # [{"start": 0.9, "end": 3.02}, ...]
"""

from .timestamps import (
    TimestampOptions,
    VADIterator,
    get_speech_timestamps,
    load,
    speech_probabilities,
    timestamps_from_probabilities,
)

__all__ = ["TimestampOptions", "VADIterator", "get_speech_timestamps", "load", "speech_probabilities",
           "timestamps_from_probabilities"]
