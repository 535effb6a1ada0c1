"""Build a real ``CLIPTokenizer`` (vocab.json + merges.txt) from a word list.

The embedded default model and the tests' tiny checkpoints need a tokenizer without network.
CLIP's tokenizer is byte-level BPE: every byte has a unicode stand-in, a word ends in ``</w>``,
and merges join pairs left to right. We emit the 256 byte symbols (+ their ``</w>`` forms) and,
for each word, the merges that build it from its characters (right to left), so known words
become one token and unknown words fall back to characters.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map (as documented for byte-level BPE)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    mapping = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + n)
            n += 1
    return mapping


def words_of(texts: Iterable[str]) -> list[str]:
    """Lower-cased words and punctuation as CLIP's pre-tokeniser splits them."""
    pat = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")
    out: set[str] = set()
    for t in texts:
        out.update(pat.findall(t.lower()))
    return sorted(out)


def build_clip_tokenizer(words: Iterable[str], folder: str | Path, model_max_length: int = 77):
    """Write vocab.json/merges.txt for ``words`` into ``folder`` and return the loaded tokenizer."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    byte_syms = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        if tok not in vocab:
            vocab[tok] = len(vocab)

    for s in byte_syms:
        add(s)
    for s in byte_syms:
        add(s + "</w>")
    merges: list[tuple[str, str]] = []
    seen = set()
    enc = _bytes_to_unicode()
    # Merges build each word from its END: every merge's right side ends in "</w>", so a merge
    # can only fire on the last two symbols of a word and one word's merges cannot break another
    # (left-to-right prefixes let e.g. "right"'s (r, i) outrank "striped"'s (s, t) and split it).
    for word in sorted(set(words)):
        chars = [enc[b] for b in word.encode("utf-8")]
        if not chars:
            continue
        right = chars[-1] + "</w>"
        for prev in reversed(chars[:-1]):
            pair = (prev, right)
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            right = prev + right
            add(right)
    add("<|startoftext|>")
    add("<|endoftext|>")
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                        model_max_length=model_max_length, pad_token="<|endoftext|>")
    tok.save_pretrained(folder)
    return tok


def build_t5_tokenizer(words: Iterable[str], folder: str | Path, model_max_length: int = 128):
    """A real ``T5Tokenizer`` (Unigram, no sentencepiece) over ``words``, saved to ``folder``.

    T5's layout: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, then the pieces. Each known word is one
    ``▁word`` piece; every single character (with and without ``▁``) is a fallback piece, so any
    lower-case ASCII text tokenises without ``<unk>``. transformers 5 builds the Unigram model from
    this list directly and writes ``tokenizer.json``, which loads back without sentencepiece.
    """
    from transformers import T5Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(33, 127)]
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -8.0)]
    seen = {p for p, _ in pieces}
    # Whole words score high so Viterbi prefers them over character spellings.
    for w in sorted(set(words)):
        if "▁" + w not in seen:
            seen.add("▁" + w)
            pieces.append(("▁" + w, -1.0))
    for c in chars:
        for p in (c, "▁" + c):
            if p not in seen:
                seen.add(p)
                pieces.append((p, -10.0))
    tok = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)
    tok.save_pretrained(folder)
    return tok
