"""Griffe extension: show the docstrings' reStructuredText roles as Markdown.

bayesdl's docstrings are free-form text with Sphinx roles (``:func:`fit```,
``:class:`~bayesdl.inference.Posterior```, ``:math:`\\mathbb H[p]```). mkdocstrings renders
Markdown, where a role would show as literal ``:func:``; this extension rewrites each role to
inline code (``~`` keeps the last component, as Sphinx shows it), ``:math:`` to inline math, a
``.. math::`` block to a display block and ``Example::`` to ``Example:``, leaving the source
docstrings unchanged.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(func|class|meth|mod|data|attr|exc|obj|math):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", re.MULTILINE)  # "Example::" introduces an indented literal block
_MATH_BLOCK = re.compile(r"^( *)\.\. math::\n\n((?:\1    .*\n|\n)+)", re.MULTILINE)


def _markdown(match: re.Match) -> str:
    role, tilde, target = match.groups()
    if role == "math":
        return f"${target}$"
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _math_block(match: re.Match) -> str:
    indent, body = match.groups()
    lines = [line[len(indent) + 4:] for line in body.rstrip("\n").splitlines()]
    return f"{indent}$$\n" + "\n".join(indent + line for line in lines) + f"\n{indent}$$\n\n"


class RstRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring griffe loads."""

    def _rewrite(self, obj) -> None:
        if obj.docstring is not None:
            text = _MATH_BLOCK.sub(_math_block, obj.docstring.value + "\n")
            text = _LITERAL.sub(r"\1:", _ROLE.sub(_markdown, text))
            obj.docstring.value = text.rstrip("\n")

    def on_instance(self, *, obj, **kwargs) -> None:  # griffe calls it for every object it loads
        self._rewrite(obj)
