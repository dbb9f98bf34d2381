"""Prove, from a chat template's source, that it copies every message's content into its output unchanged.

When the proof holds, a conversation's render is its shape's skeleton (chat_spans.py: the render with
numbered placeholder contents) with the contents put back, so the batched tokenizer can skip the
per-row template render. When it does not, every row is rendered and checked as before; a template
is never trusted on a guess.

The claim. Take two conversations of one shape: the same messages with the same fields except
`content`, every content a string (the batched path only uses a skeleton for such rows). If `check`
accepts the template, both renders take the same path through the template and write the same
output, except that where one writes content i the other writes its own content i, unchanged.

The argument is an abstract interpretation of the template's syntax tree, parsed by the same Jinja
environment transformers renders chat templates with (a sandbox with autoescape off and no finalize,
which `check` verifies). transformers hands the template plain copies of the messages (exact `str`,
`int`, `dict`, `list`...: `_plain_template_data`) under the name `messages`, and nothing else that
holds a content. Every expression gets one of these kinds:
- PLAIN: the same in both renders, and never a `Markup` (constants, context variables, the fields
  of a message other than `content`, tests and comparisons, `+` and `~` of plain values);
- OTHER: the same in both renders, but of unknown type (what filters, calls, attributes and
  arithmetic give: `'<b>' | safe` is a Markup, and `%` on a Markup escapes);
- TEXT: a message's content, or `+`/`~` of contents and PLAIN strings (or a PLAIN value: kinds are
  upper bounds, see names below);
- MESSAGE / MESSAGES: one message / the list of messages (or a slice of it).
Each rule only lets a value of a kind go where that kind's promise survives:
- TEXT may be written out (`{{ }}` writes `str(x)`, which is x for a string), joined by `+` with
  TEXT or PLAIN (str + str concatenates; any other type raises in both renders alike; a `Markup`
  would escape the content, which is why OTHER is not allowed there) or by `~` with anything (`~`
  joins `str()` of each part), picked by an `if ... else` whose condition is not TEXT, assigned to a
  name, and tested with a type test (`is string`, `is defined`...), which gives the same answer for
  every string. Nothing else: no filter, method, slice, comparison, `in`, truth test or call.
- MESSAGE may be indexed or read with a constant field name (`content` gives TEXT, any other field
  PLAIN, `.get(name[, plain default])` likewise), be the right side of `in` (its set of keys is part
  of the shape), or take a type test. It is never iterated (key order is not part of the shape),
  written out, joined, filtered (no `tojson`) or passed on.
- MESSAGES may be iterated (each item a MESSAGE), indexed (MESSAGE), sliced (MESSAGES), and given to
  the filters `length`, `count` (PLAIN), `first`, `last` (MESSAGE), or a type test.
- Every condition (`if`, loop filters, `and`/`or`/`not`, `x if c else y`) and every argument of a call,
  filter or test must be PLAIN or OTHER, so control flow and every non-TEXT output are the same in
  both renders. (No branch is skipped as dead, not even under `is string`: a name's kind is only an
  upper bound, so the walker never knows a value *is* a content, only that it may be.)
- A name's kind is the join of everything assigned to it anywhere in the template (loop targets
  included), found by walking the tree until no kind changes; that over-approximates Jinja's scoping.
  PLAIN joins into any kind; two different kinds among TEXT, MESSAGE, MESSAGES and OTHER on one name
  are refused.
- `loop` may only be read through its counters (`loop.index`, `loop.first`...) and `cycle`/`changed`
  with PLAIN or OTHER arguments: `loop.previtem` and `loop.nextitem` would be messages in disguise.
- Statements that could carry content where the walk cannot follow are refused: macros, call blocks
  (so `{% generation %}` too), filter blocks, `with`, includes, imports, blocks, `autoescape` blocks
  and recursive loops; `{% set x %}...{% endset %}` may not capture TEXT; namespace attributes may
  only hold PLAIN or OTHER.
So every branch taken, every loop bound and every non-TEXT value written depends on the shape alone,
and every TEXT written is the contents, verbatim, between the same strings. The fill-versus-render
check on probe conversations (ChatRenderer) stays as a second guard.
"""

from __future__ import annotations

from jinja2 import nodes

PLAIN, OTHER, TEXT, MESSAGE, MESSAGES = "plain value", "value", "content", "message", "list of messages"
_VALUES = (PLAIN, OTHER)
_TYPE_TESTS = frozenset({"defined", "undefined", "none", "string", "mapping", "sequence", "iterable", "number"})
_LOOP_COUNTERS = frozenset({"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth",
                            "depth0"})
_MESSAGES_FILTERS = {"length": PLAIN, "count": PLAIN, "first": MESSAGE, "last": MESSAGE}


class Unproven(Exception):
    """The template does something the proof cannot follow; the message says what."""


def check(template: str | None) -> str | None:
    """None when `template` provably writes every content verbatim, else the reason it is not proven."""
    if not template:
        return "there is no chat template"
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        env = _compile_jinja_template(template).environment
    except Exception as e:  # a template transformers cannot compile renders nothing to skip
        return f"the template does not compile ({type(e).__name__})"
    if env.autoescape is not False or env.finalize is not None or getattr(env, "intercepted_binops", None):
        return "transformers' template environment escapes, finalizes or intercepts output"
    try:
        tree = env.parse(template)
        walker = _Walker()
        walker.walk(tree)
        while walker.changed:  # a name's kind grew: walk again until every kind is settled
            walker.changed = False
            walker.walk(tree)
    except Unproven as e:
        return str(e)
    except Exception as e:  # a parse error: the template fails for every row the same way
        return f"the template could not be analysed ({type(e).__name__})"
    return None


def _join(a: str, b: str) -> str:
    if a == b or b == PLAIN:
        return a
    if a == PLAIN:
        return b
    raise Unproven(f"a name holds both a {a} and a {b}")


class _Walker:
    def __init__(self):
        self.names: dict[str, str] = {"messages": MESSAGES}
        self.changed = False
        self.capturing = 0  # inside {% set x %}...{% endset %}

    # -- statements

    def walk(self, node: nodes.Node) -> None:
        for child in node if isinstance(node, list) else [node]:
            method = getattr(self, f"_stmt_{type(child).__name__}", None)
            if method is None:
                raise Unproven(f"the template uses {type(child).__name__}, which the proof does not follow")
            method(child)

    def _stmt_Template(self, node):
        self.walk(node.body)

    def _stmt_Output(self, node):
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            kind = self.expr(child)
            if kind not in (PLAIN, OTHER, TEXT):
                raise Unproven(f"the template writes out a whole {kind}")
            if kind == TEXT and self.capturing:
                raise Unproven("the template captures a content with {% set %}...{% endset %}")

    def _stmt_If(self, node):
        for branch in [node, *node.elif_]:
            self.value(branch.test)
            self.walk(branch.body)
        self.walk(node.else_)

    def _stmt_For(self, node):
        if node.recursive:
            raise Unproven("the template uses a recursive loop")
        kind = self.expr(node.iter)
        if kind in (TEXT, MESSAGE):  # a message's keys come in its own order, which its shape leaves out
            raise Unproven(f"the template loops over a {kind}")
        self.bind(node.target, MESSAGE if kind == MESSAGES else kind)
        if node.test is not None:
            self.value(node.test)
        self.walk(node.body)
        self.walk(node.else_)

    def _stmt_Assign(self, node):
        self.bind(node.target, self.expr(node.node))

    def _stmt_AssignBlock(self, node):
        self.capturing += 1
        try:
            self.walk(node.body)
        finally:
            self.capturing -= 1
        if node.filter is not None:
            self._arguments(node.filter)
        self.bind(node.target, OTHER)

    def _stmt_Break(self, node):
        pass

    _stmt_Continue = _stmt_Break

    def bind(self, target: nodes.Expr, kind: str) -> None:
        if isinstance(target, nodes.Name):
            if target.name == "loop":
                raise Unproven("the template assigns to `loop`")
            old = self.names.get(target.name, PLAIN)
            new = _join(old, kind)
            if new != old:
                self.names[target.name] = new
                self.changed = True
        elif isinstance(target, nodes.NSRef):
            if kind not in _VALUES:
                raise Unproven(f"the template stores a {kind} in a namespace")
        elif isinstance(target, nodes.Tuple):
            if kind not in _VALUES:
                raise Unproven(f"the template unpacks a {kind}")
            for item in target.items:
                self.bind(item, kind)
        else:
            raise Unproven(f"the template assigns to a {type(target).__name__}")

    # -- expressions

    def value(self, node: nodes.Expr) -> str:
        """The kind of an expression that decides something or is passed on: PLAIN or OTHER only."""
        kind = self.expr(node)
        if kind not in _VALUES:
            raise Unproven(f"the template uses a {kind} as a condition, operand or argument")
        return kind

    def expr(self, node: nodes.Expr) -> str:
        method = getattr(self, f"_expr_{type(node).__name__}", None)
        if method is None:
            raise Unproven(f"the template uses the expression {type(node).__name__}, which the proof does not follow")
        return method(node)

    def _expr_Const(self, node):
        return PLAIN

    def _expr_Name(self, node):
        if node.name == "loop":
            raise Unproven("the template uses `loop` other than through its counters")
        return self.names.get(node.name, PLAIN)  # context variables are plain copies, globals are functions

    def _expr_Getattr(self, node):
        if _is_loop(node.node):
            if node.attr in _LOOP_COUNTERS:
                return PLAIN
            raise Unproven(f"the template reads loop.{node.attr}")
        kind = self.expr(node.node)
        if kind == MESSAGE:
            if node.attr == "content":
                return TEXT
            if hasattr(dict, node.attr):  # a dict method, not a field
                raise Unproven(f"the template calls a message's .{node.attr}")
            return PLAIN
        if kind in (TEXT, MESSAGES):
            raise Unproven(f"the template reads .{node.attr} of a {kind}")
        return OTHER  # a method or attribute of a plain value: unknown type

    def _expr_Getitem(self, node):
        kind = self.expr(node.node)
        if kind == MESSAGE:
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return TEXT if node.arg.value == "content" else PLAIN
            raise Unproven("the template reads a message's field by a computed name")
        if kind == MESSAGES:
            if isinstance(node.arg, nodes.Slice):
                self.expr(node.arg)
                return MESSAGES
            self.value(node.arg)
            return MESSAGE
        if kind == TEXT:
            raise Unproven("the template indexes or slices a content")
        if isinstance(node.arg, nodes.Slice):
            self.expr(node.arg)
        else:
            self.value(node.arg)
        return kind  # an item or slice of a plain value is plain

    def _expr_Slice(self, node):
        for part in (node.start, node.stop, node.step):
            if part is not None:
                self.value(part)
        return PLAIN

    def _expr_Call(self, node):
        callee = node.node
        if isinstance(callee, nodes.Getattr) and _is_loop(callee.node) and callee.attr in ("cycle", "changed"):
            self._arguments(node)
            return PLAIN if callee.attr == "changed" else OTHER
        if isinstance(callee, nodes.Getattr) and callee.attr == "get" and self.expr(callee.node) == MESSAGE:
            key = node.args[0] if node.args else None
            if (not isinstance(key, nodes.Const) or not isinstance(key.value, str) or len(node.args) > 2
                    or node.kwargs or node.dyn_args or node.dyn_kwargs):
                raise Unproven("the template calls a message's .get other than with a field name")
            default = self.value(node.args[1]) if len(node.args) == 2 else PLAIN
            return _join(TEXT, default) if key.value == "content" else _join(PLAIN, default)
        self.value(callee)
        self._arguments(node)
        return OTHER

    def _arguments(self, node) -> None:
        for arg in node.args:
            self.value(arg)
        for kw in node.kwargs:
            self.value(kw.value)
        for extra in (node.dyn_args, node.dyn_kwargs):
            if extra is not None:
                self.value(extra)

    def _expr_Filter(self, node):
        kind = PLAIN if node.node is None else self.expr(node.node)
        self._arguments(node)
        if kind in _VALUES:
            return OTHER
        has_args = node.args or node.kwargs or node.dyn_args or node.dyn_kwargs
        if kind == MESSAGES and node.name in _MESSAGES_FILTERS and not has_args:
            return _MESSAGES_FILTERS[node.name]
        raise Unproven(f"the template applies the filter {node.name} to a {kind}")

    def _expr_Test(self, node):
        kind = self.expr(node.node)
        has_args = node.args or node.kwargs or node.dyn_args or node.dyn_kwargs
        if node.name in _TYPE_TESTS and not has_args:
            return PLAIN  # the same answer for every string, every message, every list of messages
        if kind not in _VALUES:
            raise Unproven(f"the template applies the test {node.name} to a {kind}")
        self._arguments(node)
        return PLAIN

    def _expr_Compare(self, node):
        left = self.expr(node.expr)
        for operand in node.ops:
            right = self.expr(operand.expr)
            key_test = operand.op in ("in", "notin") and right == MESSAGE  # a message's keys are its shape
            if left not in _VALUES or (right not in _VALUES and not key_test):
                raise Unproven(f"the template compares a {left if left not in _VALUES else right}")
            left = right
        return PLAIN

    def _expr_Add(self, node):
        kinds = {self.expr(node.left), self.expr(node.right)}
        if TEXT in kinds:
            if not kinds <= {TEXT, PLAIN}:
                raise Unproven("the template adds a content to a value that is not known to be a plain string")
            return TEXT
        if not kinds <= set(_VALUES):
            raise Unproven(f"the template adds a {(kinds - set(_VALUES)).pop()}")
        return PLAIN if kinds == {PLAIN} else OTHER

    def _expr_Concat(self, node):
        kinds = {self.expr(child) for child in node.nodes}
        if not kinds <= {TEXT, PLAIN, OTHER}:
            raise Unproven(f"the template joins a {(kinds - {TEXT, PLAIN, OTHER}).pop()} with ~")
        return TEXT if TEXT in kinds else PLAIN  # ~ joins str() of each part: a plain string

    def _expr_CondExpr(self, node):
        self.value(node.test)
        return _join(self.expr(node.expr1), PLAIN if node.expr2 is None else self.expr(node.expr2))

    def _expr_And(self, node):
        return _join(self.value(node.left), self.value(node.right))

    _expr_Or = _expr_And

    def _expr_Not(self, node):
        self.value(node.node)
        return PLAIN

    def _arithmetic(self, node):
        for part in (getattr(node, "left", None), getattr(node, "right", None), getattr(node, "node", None)):
            if part is not None:
                self.value(part)
        return OTHER  # `%` on a Markup escapes, so not PLAIN

    _expr_Sub = _expr_Mul = _expr_Div = _expr_FloorDiv = _expr_Mod = _expr_Pow = _expr_Neg = _expr_Pos = _arithmetic

    def _expr_List(self, node):
        for item in node.items:
            self.value(item)
        return OTHER

    _expr_Tuple = _expr_List

    def _expr_Dict(self, node):
        for pair in node.items:
            self.value(pair.key)
            self.value(pair.value)
        return OTHER


def _is_loop(node: nodes.Expr) -> bool:
    return isinstance(node, nodes.Name) and node.name == "loop"
