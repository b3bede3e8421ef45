"""Speech data for the case studies: offline corpora built from Debian packages and offline TTS, loaders for
the real corpora users have on disk (VCTK, ESC-50, ASVspoof 2019 LA, a folder + CSV), and batched features.

One concept per module: ``cache`` (where things live, atomic writes), ``packages`` (Debian packages unpacked
into the cache), ``audio`` (reading and writing audio), ``loaders`` (real corpora), ``features`` (log-mel and
LFCC), ``vad_corpus`` and ``antispoof_corpus`` (the corpus builders). Import from the submodules directly.
"""
