"""Tests of softwidth_studies.data.antispoof_sources on tiny fixture trees in the packages' on-disk layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from softwidth_studies.data.antispoof_sources import PACKAGES, SPLIT_OF, load_groups

TONE = (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32)


def _audio(path: Path, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, TONE, rate, format="OGG" if path.suffix == ".ogg" else "WAV")


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def make_roots(tmp: Path) -> dict[str, Path]:
    roots = {p: tmp / p for p in PACKAGES}
    voice = roots["festvox-ru"] / "usr/share/festival/voices/russian/msu_ru_nsh_clunits"
    _text(voice / "etc/txt.done.data", '( ru_0001 "Она завела, прядь вол+ос." )\n( ru_0002 "Вторая." )\n')
    _audio(voice / "wav/ru_0001.wav")
    _audio(voice / "wav/ru_0002.wav")
    _text(roots["fillets-ng-data"] / "usr/share/games/fillets-ng/script/atlantis/dialogs_cs.lua",
          'dialogId("sp-v-no0", "font_big", "Lo and behold!")\ndialogStr("No tohle!")\n\n'
          'dialogId("v-kdoby", "font_big",\n"Who \\"could\\" guess?")\ndialogStr(\n"Kdo by to \\"řekl\\"?")\n')
    sound = roots["fillets-ng-data-cs"] / "usr/share/games/fillets-ng/sound/atlantis/cs"
    for name in ("sp-v-no0", "v-kdoby", "sp-x-minor", "sp-m-notext"):
        _audio(sound / f"{name}.ogg", 22050)
    stamps = roots["tuxpaint-stamps-default"] / "usr/share/tuxpaint/stamps/animals"
    _text(stamps / "frog.txt", "A frog.\nro.utf8=O broască.\nru.utf8=Лягушка.\n")
    for lang in ("ro", "ru", "lt"):
        _audio(stamps / f"frog_desc_{lang}.ogg", 44100)
    allison = roots["asterisk-core-sounds-en-wav"] / "usr/share/asterisk/sounds/en_US_f_Allison"
    for name in ("hello.wav", "digits/1.wav", "beep.wav", "silence/1.wav"):
        _audio(allison / name, 8000)
    return roots


def test_groups_splits_and_transcripts(tmp_path):
    groups, excluded = load_groups(make_roots(tmp_path))
    by = {g.name: g for g in groups}
    assert sorted(by) == ["asterisk:Allison/en", "festvox:msu_ru_nsh/ru", "fillets-cs:m/cs", "fillets-cs:v/cs",
                          "tuxpaint:ro/ro", "tuxpaint:ru/ru"]
    assert all(g.split == SPLIT_OF[g.speaker] for g in groups)
    fest = by["festvox:msu_ru_nsh/ru"].utterances
    assert [u.text for u in fest] == ["Она завела, прядь волос.", "Вторая."] and fest[0].text_en is None
    fish = {u.ident.rsplit("/", 1)[1]: u for u in by["fillets-cs:v/cs"].utterances}
    assert fish["sp-v-no0.ogg"].text == "No tohle!" and fish["sp-v-no0.ogg"].text_en == "Lo and behold!"
    assert fish["v-kdoby.ogg"].text == 'Kdo by to "řekl"?' and fish["v-kdoby.ogg"].text_en == 'Who "could" guess?'
    assert by["fillets-cs:m/cs"].utterances[0].text is None  # audio without a dialog line: resynthesis only
    tux = by["tuxpaint:ro/ro"].utterances[0]
    assert (tux.text, tux.text_en) == ("O broască.", "A frog.") and tux.ident.startswith("tuxpaint-stamps-default:")
    assert [u.path.name for u in by["asterisk:Allison/en"].utterances] == ["1.wav", "hello.wav"]
    assert excluded["asterisk beeps and tones"] == 1 and excluded["asterisk silence/ recordings"] == 1
    assert excluded["fillets-ng minor characters (actor unknown)"] == 1
    assert excluded["speakers outside the antispoof split table"] == 1  # tuxpaint lt


def test_split_table_keeps_each_person_in_one_split():
    people = {}
    for speaker, split in SPLIT_OF.items():
        people.setdefault(speaker, set()).add(split)
    assert all(len(s) == 1 for s in people.values())
    assert {s for v in people.values() for s in v} == {"train", "val", "test"}
