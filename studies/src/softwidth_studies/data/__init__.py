"""Speech data for the case studies: offline corpora built from Debian packages and offline TTS, loaders for
the real corpora users have on disk (VCTK, ESC-50, ASVspoof 2019 LA, a folder + CSV), and batched features.

One concept per module: ``cache`` (where things live, atomic writes), ``packages`` (Debian packages unpacked
into the cache), ``audio`` (reading and writing audio), ``loaders`` (real corpora), ``features`` (log-mel and
LFCC), ``vad_corpus`` and ``antispoof_corpus`` (the corpus builders; ``vad_signal``, ``vad_sources`` and
``vad_report`` hold the VAD builder's signal processing, source selection and summary; ``tts``,
``antispoof_sources``, ``antispoof_channel`` and ``antispoof_report`` the anti-spoofing builder's systems,
speaker table, channel neutralisation and summary). Import from the submodules directly.
"""
