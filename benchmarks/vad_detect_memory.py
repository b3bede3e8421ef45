"""Does ``softwidth vad detect`` stream a 1-hour file in bounded memory? Peak RSS and wall time, one run each.

Writes 16 kHz PCM wavs of 1 minute and 1 hour (noise with tone bursts, a minute at a time) to a temporary folder,
runs ``softwidth vad detect FILE --json`` on each in a fresh process with the shipped model, and records the
process's peak resident memory (``ru_maxrss``) and wall time. The 1-hour file is 115 MB on disk and 230 MB as
float32; a detector that read it whole would show that in its peak. Writes ``results/bench/vad_detect_memory.json``.

    python benchmarks/vad_detect_memory.py [--hours 1.0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

CODE = ("import resource, sys; from softwidth_studies.cli import main; rc = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)")


def write_wav(path: Path, seconds: int) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 60) / 16000
    burst = (np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.2 * t) > 0.5)).astype(np.float32) * 0.1
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        for _ in range(0, seconds, 60):
            f.write(rng.normal(0, 0.01, 16000 * 60).astype(np.float32) + burst)


def measure(path: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CODE, "vad", "detect", str(path), "--json"], capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    result = json.loads("\n".join(lines[:-1]))
    return {"seconds_of_audio": result["seconds"], "segments": len(result["segments"]),
            "peak_rss_mb": float(lines[-1]), "wall_seconds": wall, "real_time_factor": wall / result["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("results/bench/vad_detect_memory.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for name, seconds in (("1 min", 60), (f"{args.hours:g} h", int(args.hours * 3600))):
            path = Path(tmp) / "long.wav"
            write_wav(path, seconds)
            rows[name] = measure(path)
            print(name, rows[name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": rows, "note": "fresh process per file, shipped default model, "
                                    "ru_maxrss of the detect process"}, indent=2) + "\n")


if __name__ == "__main__":
    main()
