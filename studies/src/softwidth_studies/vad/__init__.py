"""The voice activity detection case study: models, training study, evaluation, peers and streaming detection."""
