"""The spoofing systems of the anti-spoofing corpus: offline TTS engines and resynthesis of real speech.

Ten systems from six families, all offline (Debian bookworm packages unpacked into the cache, never installed
system-wide, plus ``pyworld`` and plain torch):

============== ============================================ ========= ===================================
system         family                                       languages where
============== ============================================ ========= ===================================
espeak-formant formant synthesis (espeak-ng)                 many      train, val, test
flite-cg       statistical parametric (flite clustergen)    en        train, val, test
fest-diphone   residual-excited LPC diphones (festival)     en        train, val, test
world          WORLD vocoder resynthesis, coded envelope     any       train, val, test
griffin-lim    mel spectrogram + Griffin-Lim phase          any       train, val, test
espeak-klatt   Klatt formant synthesis (espeak-ng)          many      test only (unseen)
flite-diphone  diphone concatenation (flite kal16)          en        test only (unseen)
fest-hts       HMM synthesis (festival HTS us-slt)          en        test only (unseen)
fest-clunits   unit selection (festival festvox-ru)         ru        test only (unseen)
codec2         codec2 speech codec at 3200/1300/700C bit/s  any       test only (unseen)
============== ============================================ ========= ===================================

Running the Debian binaries from their unpacked trees needs their shared libraries: :func:`fetch_toolbox`
unpacks each tool's packages plus the closure of their ``lib*`` dependencies that ``dpkg`` does not report
as installed (found with ``apt-cache depends``), and runs the binaries with ``LD_LIBRARY_PATH`` pointing into
those trees (``libpulse`` needs its private ``pulseaudio/`` directory too). espeak-ng gets ``--path`` to its
data; festival gets ``--libdir``/``--datadir`` to one directory of symlinks merging the ``usr/share/festival``
trees of festival, its lexicons and its voices, and runs headless batch scripts with ``utt.save.wave``.

A system turns input into 16 kHz float32 mono audio: a TTS system maps a list of texts to a list of waveforms
(``None`` for a text it failed on), a resynthesis system maps a waveform to a waveform. Every call is
deterministic given its ``rng`` (a ``numpy.random.Generator`` that draws the prosody settings).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly

from softwidth.errors import SoftWidthError
from softwidth.layers.frontend import mel_filters
from .audio import AudioError, read_audio
from .cache import default_cache_dir, read_json, write_json
from .packages import fetch_package

__all__ = [
    "SAMPLE_RATE",
    "SpoofSystem",
    "Toolbox",
    "codec2_resynthesis",
    "default_systems",
    "fetch_toolbox",
    "griffin_lim",
    "mel_griffin_lim",
    "world_resynthesis",
]

SAMPLE_RATE = 16000  # Hz: every system returns audio at this rate
SPLITS = ("train", "val", "test")
_TIMEOUT = 300  # s per subprocess; a hung synthesiser fails that text instead of the build

# Packages named explicitly per tool; their lib* dependencies are added by _closure.
TOOL_PACKAGES: dict[str, tuple[str, ...]] = {
    "espeak-ng": ("espeak-ng", "espeak-ng-data"),
    "flite": ("flite",),
    "festival": ("festival", "festlex-cmu", "festlex-poslex", "festvox-kallpc16k", "festvox-kdlpc16k",
                 "festvox-us-slt-hts", "festvox-ru"),
    "codec2": ("codec2",),
}
# The languages espeak-ng systems are asked to speak (ISO 639-1, also espeak-ng voice names).
ESPEAK_LANGUAGES = frozenset({"be", "bg", "ca", "cs", "da", "el", "en", "es", "fr", "it", "nl", "ro", "ru"})


@dataclass(frozen=True, eq=False)
class SpoofSystem:
    """One spoofing system.

    Attributes:
        name: short id used in file names and metadata (``"espeak-formant"``).
        family: the synthesis family in words.
        kind: ``"tts"`` (``run(texts, language, voice, rng, workdir) -> list[ndarray | None]``) or
            ``"resynthesis"`` (``run(audio, voice, rng, workdir) -> ndarray``); audio is 16 kHz float32 mono.
        languages: languages a TTS system speaks (``None``: any, for resynthesis).
        voices: split -> voices (engine voice names or settings) used in that split; a split that is absent
            does not get this system. Systems present only in ``test`` are the unseen attacks.
        run: the synthesis function (see ``kind``).
        source: where the engine comes from (Debian package or PyPI name), for the metadata.
    """

    name: str
    family: str
    kind: str
    languages: frozenset[str] | None
    voices: Mapping[str, tuple[str, ...]]
    run: Callable = field(repr=False)
    source: str = ""

    @property
    def unseen(self) -> bool:
        """True when the system appears in the test split only."""
        return set(self.voices) == {"test"}


# -- unpacked Debian tools ---------------------------------------------------------------------------
def _query(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run an apt/dpkg query; a missing tool reads as a failed query (exit status 127)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: command not found")


def _installed(names: list[str]) -> set[str]:
    """The names among ``names`` that dpkg reports as installed on this machine."""
    if not names or shutil.which("dpkg-query") is None:
        return set()
    out = _query(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *names]).stdout
    return {ln.split()[0] for ln in out.splitlines() if len(ln.split()) > 1 and ln.split()[1] == "ii"}


def _depends(names: list[str]) -> dict[str, list[list[str]]]:
    """``apt-cache depends`` of several packages (one call: each takes most of a second): for each, its
    Depends as groups of alternatives."""
    proc = _query(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                   "--no-replaces", "--no-enhances", *names])
    if proc.returncode != 0:
        raise SoftWidthError(f"`apt-cache depends` failed ({proc.stderr.strip()[-200:]}); run "
                             "`sudo apt-get update` or install the TTS packages with apt-get")
    result: dict[str, list[list[str]]] = {}
    groups: list[list[str]] = []
    pending: list[str] = []
    for line in proc.stdout.splitlines():
        if line and not line[0].isspace():  # a package header line starts the next package
            groups = result.setdefault(line.strip(), [])
            continue
        match = re.match(r"^\s*(\|?)Depends: (\S+)$", line)
        if not match:
            continue
        if not match.group(2).startswith("<"):  # <virtual> packages have providers listed below them
            pending.append(match.group(2).split(":")[0])
        if not match.group(1):  # no leading '|': this alternative group is complete
            groups.append(pending)
            pending = []
    return result


def _closure(packages: tuple[str, ...]) -> list[str]:
    """``packages`` plus, recursively, their ``lib*`` dependencies that are not installed, sorted.

    Only shared-library packages are followed: the tools need their libraries at run time, not the
    maintainer-script dependencies (adduser, alsa-utils, ...). An alternative group is satisfied by any
    installed member, otherwise its first member is fetched.
    """
    wanted, level = set(packages), sorted(set(packages))
    while level:
        groups = [[d for d in g if d.startswith("lib")] for deps in _depends(level).values() for g in deps]
        groups = [g for g in groups if g and not wanted.intersection(g)]
        installed = _installed(sorted({d for g in groups for d in g}))
        new = {g[0] for g in groups if not installed.intersection(g)}
        wanted |= new
        level = sorted(new)
    return sorted(wanted)


def _merge_trees(sources: list[Path], dest: Path) -> Path:
    """Build ``dest``: a directory of symlinks to every file under ``sources`` (first source wins), once."""
    marker = dest / ".merged"
    if marker.is_file():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for src in sources:
        for path in sorted(src.rglob("*")):
            target = tmp / path.relative_to(src)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(path.resolve())
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    write_json(marker, {"sources": [str(s) for s in sources]})
    return dest


@dataclass(frozen=True)
class Toolbox:
    """The unpacked TTS tools: ``roots`` maps each Debian package to its unpacked tree; ``festival_share``
    is the merged festival library directory. Build it with :func:`fetch_toolbox`."""

    roots: Mapping[str, Path]
    festival_share: Path | None = None

    def binary(self, package: str, name: str) -> Path:
        if package not in self.roots:
            raise SoftWidthError(f"the toolbox has no package {package!r}; fetch it with fetch_toolbox")
        return self.roots[package] / "usr" / "bin" / name

    @functools.cached_property
    def env(self) -> dict[str, str]:
        """The environment for the tools: ``LD_LIBRARY_PATH`` over every unpacked library directory."""
        dirs = []
        for root in self.roots.values():
            for lib in sorted(root.glob("usr/lib/*-linux-gnu*")) + sorted(root.glob("lib/*-linux-gnu*")):
                dirs += [str(lib)] + ([str(lib / "pulseaudio")] if (lib / "pulseaudio").is_dir() else [])
        old = os.environ.get("LD_LIBRARY_PATH")
        return {**os.environ, "LC_ALL": "C.UTF-8", "LD_LIBRARY_PATH": ":".join(dirs + ([old] if old else []))}

    def run(self, cmd: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
        """Run a tool; raise :class:`SoftWidthError` with its last error line if it fails."""
        try:
            proc = subprocess.run(cmd, env=self.env, capture_output=True, timeout=_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SoftWidthError(f"{what}: cannot run {cmd[0]} ({err})") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or b"").decode("utf-8", "replace").strip().splitlines()
            raise SoftWidthError(f"{what}: {Path(cmd[0]).name} exited with {proc.returncode}"
                                 f" ({tail[-1] if tail else 'no output'})")
        return proc


def fetch_all(names: list[str], cache: Path, *, progress: bool = False, what: str = "packages") -> dict[str, Path]:
    """:func:`~softwidth_studies.data.packages.fetch_package` for each name, four at a time (each fetch waits mostly
    on apt and dpkg-deb); return ``{name: tree root}`` in the order of ``names``."""
    from concurrent.futures import ThreadPoolExecutor

    names = list(dict.fromkeys(names))
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(fetch_package, name, cache) for name in names]
        if progress:
            from tqdm.auto import tqdm
            for future in tqdm(futures, desc=f"fetching {what}", unit="pkg", leave=False):
                future.exception()  # waits for it
        return {name: future.result() for name, future in zip(names, futures)}


def fetch_toolbox(cache_dir: str | os.PathLike[str] | None = None, *,
                  tools: tuple[str, ...] = tuple(TOOL_PACKAGES), progress: bool = False) -> Toolbox:
    """Unpack the TTS tools (``tools`` among ``espeak-ng, flite, festival, codec2``) and their libraries.

    Idempotent: packages already in the cache are not fetched again. Raises :class:`SoftWidthError` (one
    line, saying what to install) if a package cannot be fetched.
    """
    unknown = sorted(set(tools) - set(TOOL_PACKAGES))
    if unknown:
        raise SoftWidthError(f"fetch_toolbox: unknown tools {unknown}; choose among {sorted(TOOL_PACKAGES)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    explicit = tuple(p for tool in tools for p in TOOL_PACKAGES[tool])
    fetch_package(explicit[0], cache)  # one first: a missing package list is refreshed by fetch_package
    record = cache / "tts" / "packages.json"  # the closure costs seconds of apt-cache: resolve it once
    known = read_json(record, default={})
    key = " ".join(explicit)
    if key not in known:
        known[key] = _closure(explicit)
        write_json(record, known)
    roots = fetch_all(known[key], cache, progress=progress, what="TTS packages")
    share = None
    if "festival" in tools:
        trees = [roots[p] / "usr/share/festival" for p in TOOL_PACKAGES["festival"]]
        share = _merge_trees([t for t in trees if t.is_dir()], cache / "tts" / "festival-share")
    return Toolbox(roots, share)


# -- TTS engines ---------------------------------------------------------------------------------------
def _read(path: Path) -> np.ndarray | None:
    try:
        return read_audio(path, SAMPLE_RATE)
    except AudioError:
        return None


def _espeak(tools: Toolbox, texts, language, voice, rng, workdir: Path) -> list[np.ndarray | None]:
    data = next(iter(sorted(tools.roots["espeak-ng-data"].glob("usr/lib/*/espeak-ng-data"))), None)
    if data is None:
        raise SoftWidthError("espeak-ng-data is unpacked but holds no usr/lib/*/espeak-ng-data directory")
    speed, pitch = int(rng.integers(140, 191)), int(rng.integers(30, 71))  # words/min, 0-99 scale
    out = []
    for i, text in enumerate(texts):
        (workdir / f"{i}.txt").write_text(text, encoding="utf-8")
        wav = workdir / f"{i}.wav"
        try:
            tools.run([str(tools.binary("espeak-ng", "espeak-ng")), f"--path={data.parent}", "-b", "1",
                       "-v", f"{language}+{voice}", "-s", str(speed), "-p", str(pitch), "-w", str(wav),
                       "-f", str(workdir / f"{i}.txt")], "espeak-ng")
            out.append(_read(wav))
        except SoftWidthError:
            out.append(None)
    return out


def _flite(tools: Toolbox, texts, language, voice, rng, workdir: Path) -> list[np.ndarray | None]:
    stretch = f"{rng.uniform(0.9, 1.15):.3f}"  # duration stretch: slower or faster speech
    out = []
    for i, text in enumerate(texts):
        (workdir / f"{i}.txt").write_text(text, encoding="utf-8")
        wav = workdir / f"{i}.wav"
        try:
            tools.run([str(tools.binary("flite", "flite")), "-voice", voice, "--setf", f"duration_stretch={stretch}",
                       "-f", str(workdir / f"{i}.txt"), "-o", str(wav)], "flite")
            out.append(_read(wav))
        except SoftWidthError:
            out.append(None)
    return out


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', " ") + '"'


def _festival_batch(tools: Toolbox, texts: list[tuple[int, str]], voice: str, stretch: float, workdir: Path) -> None:
    lines = [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {stretch:.3f})"]
    lines += [f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(t)})) \"{workdir / f'{i}.wav'}\" 'riff)"
              for i, t in texts]
    script = workdir / "synth.scm"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    share = str(tools.festival_share) + "/"
    tools.run([str(tools.binary("festival", "festival")), "--libdir", share, "--datadir", share, "-b", str(script)],
              "festival")


def _festival(tools: Toolbox, texts, language, voice, rng, workdir: Path) -> list[np.ndarray | None]:
    stretch = float(rng.uniform(0.9, 1.15))
    indexed = list(enumerate(texts))
    try:  # one process for all texts: loading a unit-selection voice takes about a second
        _festival_batch(tools, indexed, voice, stretch, workdir)
    except SoftWidthError:  # a text festival chokes on aborts the batch: redo the missing ones one by one
        for i, text in indexed:
            if not (workdir / f"{i}.wav").is_file():
                try:
                    _festival_batch(tools, [(i, text)], voice, stretch, workdir)
                except SoftWidthError:
                    pass
    return [_read(workdir / f"{i}.wav") if (workdir / f"{i}.wav").is_file() else None for i, _ in indexed]


# -- resynthesis -------------------------------------------------------------------------------------
def world_resynthesis(audio: np.ndarray, *, dims: int = 40, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """WORLD analysis (DIO + StoneMask F0, CheapTrick envelope, D4C aperiodicity) and synthesis, with the
    envelope coded to ``dims`` mel-cepstral-like coefficients and the aperiodicity to WORLD's bands, as a
    statistical parametric TTS or a voice-conversion system would. ``(samples,)`` float32 in and out."""
    with warnings.catch_warnings():  # pyworld imports pkg_resources, which warns on recent setuptools
        warnings.simplefilter("ignore")
        try:
            import pyworld
        except ImportError:
            raise SoftWidthError("the WORLD spoofing system needs pyworld: pip install 'setuptools<81' && "
                                 "pip install --no-build-isolation pyworld") from None
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    sp = pyworld.cheaptrick(x, f0, times, sample_rate)
    ap = pyworld.d4c(x, f0, times, sample_rate)
    n_fft = (sp.shape[1] - 1) * 2
    sp = pyworld.decode_spectral_envelope(pyworld.code_spectral_envelope(sp, sample_rate, dims), sample_rate, n_fft)
    ap = pyworld.decode_aperiodicity(pyworld.code_aperiodicity(ap, sample_rate), sample_rate, n_fft)
    y = pyworld.synthesize(f0, sp, ap, sample_rate, frame_period=5.0)
    return np.asarray(y[: len(audio)], dtype=np.float32)


def griffin_lim(magnitude: torch.Tensor, *, n_fft: int, hop_length: int, n_iter: int = 32, momentum: float = 0.99,
                length: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013): a signal whose STFT magnitude approaches ``magnitude``.

    Args:
        magnitude: ``(n_fft // 2 + 1, frames)`` linear STFT magnitude (Hann window of ``n_fft`` samples,
            hop ``hop_length`` samples, centred frames, as ``torch.stft(center=True)``).
        n_iter: projection iterations; momentum: the fast-GL extrapolation factor (0 gives plain GL).
        length: samples to return (default ``hop_length * (frames - 1)``).
        generator: seeds the random initial phase.
    Returns ``(length,)`` float32 samples.
    """
    window = torch.hann_window(n_fft, dtype=torch.float64)
    mag = magnitude.to(torch.float64)
    phase = torch.rand(mag.shape, generator=generator, dtype=torch.float64) * (2 * torch.pi)
    angles = torch.polar(torch.ones_like(mag), phase)
    length = hop_length * (mag.shape[1] - 1) if length is None else length
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        signal = torch.istft(mag * angles, n_fft, hop_length, window=window, length=length)
        rebuilt = torch.stft(signal, n_fft, hop_length, window=window, return_complex=True)
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        angles = accelerated / accelerated.abs().clamp_min(1e-16)
        previous = rebuilt
    return torch.istft(mag * angles, n_fft, hop_length, window=window, length=length).to(torch.float32)


def mel_griffin_lim(audio: np.ndarray, *, n_mels: int = 80, n_iter: int = 32, seed: int = 0,
                    sample_rate: int = SAMPLE_RATE, n_fft: int = 1024, hop_length: int = 256) -> np.ndarray:
    """Resynthesis through a mel spectrogram, as a TTS acoustic model with a Griffin-Lim vocoder produces:
    ``n_mels`` HTK mel bands of the STFT magnitude, inverted with the filterbank's pseudo-inverse (clamped
    at zero), then :func:`griffin_lim` phase. ``(samples,)`` float32 in and out, same length."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small FFTs: worker threads only contend with numpy's BLAS threads
    try:
        return _mel_griffin_lim(audio, n_mels, n_iter, seed, sample_rate, n_fft, hop_length)
    finally:
        torch.set_num_threads(threads)


def _mel_griffin_lim(audio, n_mels, n_iter, seed, sample_rate, n_fft, hop_length) -> np.ndarray:
    x = torch.as_tensor(np.asarray(audio, dtype=np.float64))
    window = torch.hann_window(n_fft, dtype=torch.float64)
    mag = torch.stft(x, n_fft, hop_length, window=window, return_complex=True).abs()  # (freq, frames)
    bank = mel_filters(float(n_mels), n_mels=n_mels, n_fft=n_fft, sample_rate=sample_rate, f_min=0.0,
                       f_max=sample_rate / 2)  # (freq, n_mels)
    mel = bank.T @ mag
    approx = (torch.linalg.pinv(bank.T) @ mel).clamp_min(0.0)
    return griffin_lim(approx, n_fft=n_fft, hop_length=hop_length, n_iter=n_iter, length=len(audio),
                       generator=torch.Generator().manual_seed(seed)).numpy()


def codec2_resynthesis(tools: Toolbox, audio: np.ndarray, mode: str, workdir: Path) -> np.ndarray:
    """Encode and decode with codec2 (``c2enc``/``c2dec``, ``mode`` bit/s, e.g. ``"1300"``) at 8 kHz;
    ``(samples,)`` float32 at 16 kHz in and out, same length."""
    narrow = resample_poly(np.asarray(audio, dtype=np.float64), 1, 2)
    pcm = (np.clip(narrow, -1, 1) * 32767).astype("<i2")
    raw, bits, back = workdir / "in.raw", workdir / "c2.bit", workdir / "out.raw"
    raw.write_bytes(pcm.tobytes())
    tools.run([str(tools.binary("codec2", "c2enc")), mode, str(raw), str(bits)], "c2enc")
    tools.run([str(tools.binary("codec2", "c2dec")), mode, str(bits), str(back)], "c2dec")
    decoded = np.frombuffer(back.read_bytes(), dtype="<i2").astype(np.float64) / 32768
    wide = resample_poly(decoded, 2, 1).astype(np.float32)
    out = np.zeros(len(audio), dtype=np.float32)
    out[: min(len(wide), len(out))] = wide[: len(out)]
    return out


def _world(audio, voice, rng, workdir):
    return world_resynthesis(audio, dims=int(voice.removeprefix("mcep")))


def _gl(audio, voice, rng, workdir):
    n_mels, n_iter = (int(v) for v in re.fullmatch(r"mel(\d+)-gl(\d+)", voice).groups())
    return mel_griffin_lim(audio, n_mels=n_mels, n_iter=n_iter, seed=int(rng.integers(2**31)))


def default_systems(tools: Toolbox) -> tuple[SpoofSystem, ...]:
    """The ten systems of the module table, bound to ``tools``. Voices differ between splits where an engine
    has several (espeak-ng variants, flite/festival speakers), so no split's voice is another split's."""
    bind = functools.partial
    english = frozenset({"en"})
    return (
        SpoofSystem("espeak-formant", "formant synthesis (espeak-ng)", "tts", ESPEAK_LANGUAGES,
                    {"train": ("m1", "m2", "f1", "f2"), "val": ("m3", "f3"), "test": ("m4", "m6", "f4")},
                    bind(_espeak, tools), "espeak-ng"),
        SpoofSystem("flite-cg", "statistical parametric (flite clustergen)", "tts", english,
                    {"train": ("rms", "awb"), "val": ("slt",), "test": ("slt",)}, bind(_flite, tools), "flite"),
        SpoofSystem("fest-diphone", "residual-excited LPC diphones (festival)", "tts", english,
                    {"train": ("kal_diphone",), "val": ("ked_diphone",), "test": ("ked_diphone",)},
                    bind(_festival, tools), "festival"),
        SpoofSystem("world", "WORLD vocoder resynthesis, coded envelope", "resynthesis", None,
                    {k: ("mcep40", "mcep60") for k in SPLITS}, _world, "pyworld"),
        SpoofSystem("griffin-lim", "mel spectrogram + Griffin-Lim phase", "resynthesis", None,
                    {k: ("mel80-gl32", "mel64-gl16") for k in SPLITS}, _gl, "torch"),
        SpoofSystem("espeak-klatt", "Klatt formant synthesis (espeak-ng)", "tts", ESPEAK_LANGUAGES,
                    {"test": ("klatt", "klatt2", "klatt3", "klatt4")}, bind(_espeak, tools), "espeak-ng"),
        SpoofSystem("flite-diphone", "diphone concatenation (flite kal16)", "tts", english,
                    {"test": ("kal16",)}, bind(_flite, tools), "flite"),
        SpoofSystem("fest-hts", "HMM synthesis (festival HTS us-slt)", "tts", english,
                    {"test": ("cmu_us_slt_arctic_hts",)}, bind(_festival, tools), "festival"),
        SpoofSystem("fest-clunits", "unit selection (festival festvox-ru)", "tts", frozenset({"ru"}),
                    {"test": ("msu_ru_nsh_clunits",)}, bind(_festival, tools), "festival"),
        SpoofSystem("codec2", "codec2 speech codec (8 kHz)", "resynthesis", None,
                    {"test": ("3200", "1300", "700C")},
                    lambda audio, voice, rng, workdir: codec2_resynthesis(tools, audio, voice, workdir), "codec2"),
    )
