#!/usr/bin/env python3
"""Rewrites a .cu file into C++ for sprig's CUDA emulator (see cuda_runtime.h).

Two purely syntactic changes, each kept on its own lines so that errors and __LINE__ still point
at the .cu file (a #line directive names it):
  kernel<<<grid, block, smem, stream>>>(args)  ->  ::sprig_emu::launch("kernel", kernel, grid,
                                                   block, smem, stream)(args)
  __shared__ T name[N];  ->  static T name[N]; plus a call that fills it with NaN bytes when a
                             new block first reaches it (so a read before a write shows).
Usage: translate.py IN.cu OUT.cpp
"""
import os
import re
import sys

SHARED = re.compile(r"__shared__[ \t]+([^;{}()\n]*?(?:__align__\(\d+\)[ \t]*)?[^;{}()\n]*?)[ \t]+(\w+)[ \t]*"
                    r"((?:\[[^\]\n]*\])*)[ \t]*;")


def kernel_start(text, end):
    """Index where the kernel expression ending at `end` (just before <<<) begins: an identifier
    with optional namespace qualifiers and template arguments, e.g. ns::k<T, 4>."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if text[i - 1] == ">":  # template arguments: skip back to the matching '<'
        depth = 0
        while i > 0:
            i -= 1
            depth += {">": 1, "<": -1}.get(text[i], 0)
            if depth == 0:
                break
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_:"):
        i -= 1
    return i


def translate(text):
    if re.search(r"extern\s+__shared__", text):
        sys.exit("translate.py: dynamic shared memory (extern __shared__) is not emulated yet")
    out, pos = [], 0
    while True:
        open_ = text.find("<<<", pos)
        if open_ < 0:
            break
        close = text.find(">>>", open_)
        if close < 0:
            sys.exit("translate.py: <<< without >>>")
        start = kernel_start(text, open_)
        kernel = text[start:open_]  # as written, line breaks included
        name = " ".join(kernel.split())
        if not name:
            sys.exit("translate.py: no kernel name before <<<")
        out.append(text[pos:start])
        out.append('::sprig_emu::launch("%s", %s, %s)' % (name, kernel, text[open_ + 3:close]))
        pos = close + 3
    out.append(text[pos:])
    text = "".join(out)

    def shared(m):
        decl, name, dims = m.group(1), m.group(2), m.group(3)
        gen = "sprig_emu_gen_" + name
        return ("static %s %s%s; static unsigned long long %s = 0; "
                "::sprig_emu::fresh_shared(&%s, sizeof(%s), %s);" % (decl, name, dims, gen, name,
                                                                    name, gen))

    return SHARED.sub(shared, text)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = f.read()
    body = '#line 1 "%s"\n' % src + translate(text)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(dst, "w") as f:
        f.write(body)


if __name__ == "__main__":
    main()
