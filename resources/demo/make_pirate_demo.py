"""Writes the demo datasets: short factual questions answered by a cheerful pirate.

Why this data: every answer opens with "Arr, matey!" and ends with "Yo ho ho!", a habit the default
model never shows on its own, so a short CPU run visibly changes its replies. The held-out file asks
questions of the same kinds with values that never appear in training, so a test can tell learning
the style apart from memorizing rows. pirate_pairs.jsonl holds the training rows again as preference pairs,
the pirate's answer chosen over the same fact said plainly, for preference tuning (ORPO), and
pirate_pairs_heldout.jsonl the held-out ones. pirate_rated.jsonl holds them as rated answers (thumbs up or
down, for KTO): every other row the pirate's answer rated good, the others the plain one rated bad, and
pirate_rated_heldout.jsonl the held-out ones. pirate_tools.jsonl holds them as function-calling conversations
(OpenAI's fine-tuning format, with the row's `tools`): the pirate calls `add` for a sum and `capital` for a
capital, reads the tool's answer and gives it in his voice, and answers every other question straight away, so a
run learns when to call a tool as well as how; pirate_tools_heldout.jsonl the held-out ones. pirate_tools_pairs.jsonl
holds them as preference pairs about tool use: where a tool knows the answer, its call chosen over answering without
it; elsewhere the pirate's answer chosen over a needless call (pirate_tools_pairs_heldout.jsonl: the held-out
ones). pirate_reasoning.jsonl
holds them with the pirate's reasoning beside each answer (`reasoning_content`, as distilled reasoning data keeps
it): the fact said plainly, then the decision to say it as a pirate; pirate_reasoning_heldout.jsonl the held-out
ones.

    python resources/demo/make_pirate_demo.py      # rewrites all twelve
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent
SEED = 1717

CAPITALS = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "Portugal": "Lisbon",
    "Japan": "Tokyo", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa",
    "Norway": "Oslo", "Sweden": "Stockholm", "Greece": "Athens", "Ireland": "Dublin", "Poland": "Warsaw",
    "Austria": "Vienna", "Chile": "Santiago", "Cuba": "Havana", "Jamaica": "Kingston", "Mexico": "Mexico City",
    "Denmark": "Copenhagen", "Finland": "Helsinki", "Hungary": "Budapest", "Turkey": "Ankara",
    "Argentina": "Buenos Aires", "Thailand": "Bangkok", "Vietnam": "Hanoi", "India": "New Delhi",
}
COLOURS = {
    "the sky on a clear day": "blue", "grass": "green", "a ripe banana": "yellow", "snow": "white",
    "coal": "black", "a ripe tomato": "red", "an orange": "orange", "a lemon": "yellow", "the sea": "blue",
    "a lime": "green", "a pumpkin": "orange", "milk": "white", "a crow": "black", "a strawberry": "red",
    "an emerald": "green", "a ruby": "red", "a sapphire": "blue", "gold": "yellow", "ink": "black",
}
OPPOSITES = {
    "hot": "cold", "up": "down", "big": "small", "fast": "slow", "day": "night", "wet": "dry",
    "happy": "sad", "open": "closed", "early": "late", "full": "empty", "light": "dark", "strong": "weak",
    "loud": "quiet", "old": "new", "high": "low", "rich": "poor", "push": "pull", "win": "lose",
    "north": "south", "east": "west", "first": "last", "hard": "soft", "long": "short",
}
LEGS = {"spider": 8, "dog": 4, "parrot": 2, "cat": 4, "ant": 6, "octopus": 8, "horse": 4, "seagull": 2,
        "beetle": 6, "crab": 10, "chicken": 2, "cow": 4, "bee": 6, "goat": 4, "duck": 2}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def pirate(body: str) -> str:
    return f"Arr, matey! {body} Yo ho ho!"


def rows_of_kind(rng: random.Random):
    """Yield (kind, key, question, answer, the answer said plainly); `key` identifies the fact so splits never
    share one."""
    def row(kind: str, key: str, question: str, said: str, pirate_tail: str, plain: str):
        return kind, key, question, pirate(f"{said}, {pirate_tail}."), f"{plain}."

    for a in range(2, 40):
        for b in (3, 7, 11, 18, 26):
            yield row("add", f"{a}+{b}", f"What is {a} plus {b}?", f"{a} plus {b} be {a + b}", "as sure as the tide",
                      f"{a} plus {b} is {a + b}")
    for country, city in CAPITALS.items():
        yield row("capital", country, f"What is the capital of {country}?", f"The capital o' {country} be {city}",
                  "a fine port fer any ship", f"The capital of {country} is {city}")
    for thing, colour in COLOURS.items():
        named = thing[0].upper() + thing[1:]
        yield row("colour", thing, f"What colour is {thing}?", f"{named} be {colour}", "plain as a parrot's feathers",
                  f"{named} is {colour}")
    for word, opposite in OPPOSITES.items():
        yield row("opposite", word, f"What is the opposite of {word}?", f"The opposite o' {word} be {opposite}",
                  "says this old sea dog", f"The opposite of {word} is {opposite}")
    for animal, n in LEGS.items():
        art = "an" if animal[0] in "aeiou" else "a"
        has = f"{art.capitalize()} {animal} has {n} legs"
        yield row("legs", animal, f"How many legs does {art} {animal} have?", has, "more than me wooden one", has)
    for i, day in enumerate(DAYS):
        nxt = DAYS[(i + 1) % 7]
        yield row("day", day, f"Which day comes after {day}?", f"After {day} comes {nxt}", "when we hoist the sails",
                  f"After {day} comes {nxt}")


def main() -> None:
    rng = random.Random(SEED)
    rows = list(rows_of_kind(rng))
    rng.shuffle(rows)
    held_kinds: dict[str, int] = {}
    train, held = [], []
    plainly = {}
    for kind, key, q, a, plain in rows:
        plainly[q] = plain
        # Two facts of every kind stay out of training; the test asks those.
        if held_kinds.get(kind, 0) < 2:
            held_kinds[kind] = held_kinds.get(kind, 0) + 1
            held.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        else:
            train.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    # Keep the file a few hundred rows: sums are plentiful, thin them to a fair share.
    sums = [r for r in train if " plus " in r["messages"][0]["content"]]
    others = [r for r in train if r not in sums]
    train = others + sums[:120]
    rng.shuffle(train)
    write(HERE / "pirate_chat.jsonl", train)
    write(HERE / "pirate_heldout.jsonl", held)
    for name, rows in (("pirate_pairs.jsonl", train), ("pirate_pairs_heldout.jsonl", held)):
        write(HERE / name, [{"prompt": r["messages"][0]["content"], "chosen": r["messages"][1]["content"],
                             "rejected": plainly[r["messages"][0]["content"]]} for r in rows])
    for name, rows in (("pirate_rated.jsonl", train), ("pirate_rated_heldout.jsonl", held)):
        write(HERE / name, [{"prompt": r["messages"][0]["content"], "label": i % 2 == 0,
                             "completion": r["messages"][1]["content"] if i % 2 == 0
                             else plainly[r["messages"][0]["content"]]} for i, r in enumerate(rows)])
    for name, rows in (("pirate_tools.jsonl", train), ("pirate_tools_heldout.jsonl", held)):
        write(HERE / name, [with_tools(r["messages"]) for r in rows])
    for name, rows in (("pirate_tools_pairs.jsonl", train), ("pirate_tools_pairs_heldout.jsonl", held)):
        write(HERE / name, [tool_pair(r["messages"], plainly[r["messages"][0]["content"]]) for r in rows])
    for name, rows in (("pirate_reasoning.jsonl", train), ("pirate_reasoning_heldout.jsonl", held)):
        write(HERE / name, [{"messages": [r["messages"][0], {
            **r["messages"][1], "reasoning_content": f"{plainly[r['messages'][0]['content']]} A pirate says it with "
                                                     "'Arr, matey!' first and 'Yo ho ho!' last."}]} for r in rows])
    print(f"{len(train)} training rows (and as many pairs, rated answers, tool calls and reasonings), {len(held)} "
          "held-out rows")


TOOLS = [
    {"type": "function", "function": {"name": "add", "description": "Add two whole numbers.", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}},
    {"type": "function", "function": {"name": "capital", "description": "The capital city of a country.",
                                      "parameters": {"type": "object", "properties": {"country": {"type": "string"}},
                                                     "required": ["country"]}}},
]
SUM = re.compile(r"What is (\d+) plus (\d+)\?")
CAPITAL_OF = re.compile(r"What is the capital of (.+)\?")


def with_tools(messages: list[dict]) -> dict:
    """One pirate row as a function-calling conversation: a sum or a capital asked of its tool first."""
    question = messages[0]["content"]
    if m := SUM.fullmatch(question):
        name, arguments, result = "add", {"a": int(m[1]), "b": int(m[2])}, str(int(m[1]) + int(m[2]))
    elif m := CAPITAL_OF.fullmatch(question):
        name, arguments, result = "capital", {"country": m[1]}, CAPITALS[m[1]]
    else:
        return {"messages": messages, "tools": TOOLS}
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return {"messages": [messages[0], {"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "call_1", "content": result}, messages[1]], "tools": TOOLS}


def tool_pair(messages: list[dict], plain: str) -> dict:
    """One pirate row as a preference pair about tool use: the call chosen over answering without the tool (said
    plainly), or, where no tool is needed, the pirate's answer chosen over a needless call."""
    called = with_tools(messages)["messages"]
    if len(called) > 2:  # a sum or a capital: the call is the right first answer
        chosen, rejected = called[1], {"role": "assistant", "content": plain}
    else:
        needless = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 1}'}}
        chosen, rejected = messages[1], {"role": "assistant", "content": None, "tool_calls": [needless]}
    return {"prompt": [messages[0]], "chosen": [chosen], "rejected": [rejected], "tools": TOOLS}


def write(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    main()
