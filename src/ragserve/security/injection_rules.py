"""The prompt-injection rules: each a named set of patterns over folded text (see `injection.py`).

Kept apart from the matching machinery so the phrasings can be read and reviewed on their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# --- patterns -------------------------------------------------------------------------
# Written over folded text, with " " meaning "whitespace or punctuation between words", so
# "ignore -- ALL   previous *instructions*" matches "ignore all previous instructions";
# a literal space is written \x20.
#
# Speed comes from three habits. No regex starts with \b, which would stop the engine from
# scanning for its first literal (`_Pattern.spans` drops matches that start inside a word
# instead). Alternatives that share a first word share one regex. And a regex that starts
# with a list of common words names `needs`, words one of which every match contains: text
# with none of them skips the regex after a few substring tests.

_SEP = r"[\W_]{1,8}"


def _any(words: Sequence[str]) -> str:
    return "(?:" + "|".join(words) + ")"


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    needs: tuple[str, ...]

    def spans(self, folded: str) -> Iterator[tuple[int, int]]:
        if self.needs and not any(word in folded for word in self.needs):
            return
        marked = "mark" in self.regex.groupindex  # a group naming the part to report
        for match in self.regex.finditer(folded):
            start = match.start()
            if start and folded[start].isalnum() and folded[start - 1].isalnum():
                continue  # starts inside a word: "dan mode" in "abundan mode"
            yield match.span("mark") if marked else match.span()


def _p(pattern: str, needs: Sequence[str] = ()) -> _Pattern:
    return _Pattern(re.compile(pattern.replace(" ", _SEP), re.MULTILINE), tuple(needs))


# A word is letters and digits only: were "_" both a word character and a separator, a run
# like "a_a_a_..." could be split into words in exponentially many ways (catastrophic
# backtracking). `_L` is one such character.
_L = r"[^\W_]"
_W = rf"{_L}+"  # any one word, as a filler
_IGNORE_VERBS = ("ignore", "disregard", "forget", "override", "bypass", "discard")
_IGNORE = _any((*_IGNORE_VERBS, "stop following", "stop obeying", "no longer follow", "no longer obey"))
_EARLIER = r"(?:previous|prior|above|earlier|preceding|former|foregoing|original|initial)"
_ORDERS = (
    r"(?:instructions?|rules|prompts?|directions|directives|guidelines|commands|orders|context|guidance"
    r"|constraints|restrictions|programming|policies|safeguards|guardrails|filters|training|messages)\b"
)
_KIND = r"(?: (?:system|safety|content|ethical|user|developer|security|moderation))?"
# No "my": "ignore my previous message" is a user correcting themselves.
_FILLER = r"(?:all|any|the|of|your|these|those|every|and|everything|that|you|were|have|been|given|told|so|far)"
_FOREIGN_IGNORE = ("ignor", "vergiss", "missacht", "oubli", "olvid", "dimentica")

_IGNORE_INSTRUCTIONS = (
    _p(
        rf"{_IGNORE}(?:"
        # ignore all (of) the previous (system) instructions
        rf"(?: {_FILLER}){{0,4}} {_EARLIER}{_KIND} {_ORDERS}"
        # ignore the instructions above / you were given before
        rf"|(?: {_FILLER}){{0,3}}{_KIND} {_ORDERS}(?: {_FILLER}){{0,3}} (?:above|before|earlier|previously|so far)\b"
        # ignore your (safety) rules / ignore all instructions
        rf"|(?: (?:all|any|of|the)){{0,2}} your{_KIND} {_ORDERS}"
        rf"|(?: (?:all|any|every))(?: of)?(?: the)?{_KIND} {_ORDERS}"
        # ignore everything above / what you were told
        r"|(?: all)? (?:everything|anything) (?:above|before|previously|said)\b"
        r"|(?: all)?(?: everything| anything| what)? you (?:were|have been|'ve been) told\b"
        r"| (?:all|everything|the) (?:of )?(?:the )?(?:above|foregoing)(?=\s*(?:[.,;:!\n]|$|and\b|then\b|instead\b))"
        ")",
        (*_IGNORE_VERBS, "follow", "obey"),
    ),
    _p(r"(?:ignore|disregard|forget) (?:the |your |this )?system (?:prompt|message|instructions)\b", _IGNORE_VERBS),
    # German, French, Spanish or Portuguese, Italian (accents are folded away)
    _p(
        rf"(?:ignorier|vergiss|missacht){_L}* (?:{_W} ){{0,3}}(?:vorherig|vorig|bisherig|obig|fruher|vorangegangen)"
        rf"{_L}* (?:anweisung|instruktion|befehl|regel|vorgab){_L}*"
        r"|(?:ignore[rz]?|oublie[rz]?) (?:toutes )?(?:les|vos|tes) (?:instructions|consignes|regles|directives)"
        r" (?:precedentes|anterieures|ci dessus|d'avant)"
        r"|(?:ignor[ae]r?|olvid[ae]r?) (?:todas )?(?:las|tus|sus|as) (?:instrucciones|instrucoes|reglas|ordenes)"
        r" (?:anteriores|previas|precedentes)"
        r"|(?:ignora|dimentica) (?:tutte )?le (?:istruzioni|regole) (?:precedenti|sopra)",
        _FOREIGN_IGNORE,
    ),
)

_NEW_ORDERS = ("instructions", "directives", "orders", "task", "prompt")
_NEW_INSTRUCTIONS = (
    _p(
        r"(?:new|updated|revised|real|actual|true|override|secret|hidden|additional) (?:system )?"
        rf"{_any(_NEW_ORDERS)}\x20*[:>\-—]",
        _NEW_ORDERS,
    ),
    _p(r"your (?:new|real|actual|true) (?:task|instructions|role|goal|objective|purpose|job) (?:is|are|will be)\b"),
    _p(r"(?:system|admin|developer|emergency|security|priority) override\b", ("override",)),
)

_JAILBREAK_WORDS = (
    "unrestricted", "unfiltered", "uncensored", "jailbroken", "evil", "dan", "unethical", "amoral", "rogue",
    "unbound", "unchained", "malicious", "unaligned", "unlimited", "limitless",
)  # fmt: skip
_JAILBREAK_ROLE = _any(_JAILBREAK_WORDS) + r"\b"
_RESTRICTION_WORDS = (
    "restrictions", "limitations", "limits", "filters", "censorship", "guidelines", "policies", "policy",
    "safeguards", "ethics", "morals", "boundaries", "rules",
)  # fmt: skip
_RESTRICTIONS = _any(_RESTRICTION_WORDS) + r"\b"
_MODEL_NAMES = (
    r"(?:ai|a\.i\.|llms?|large language models?|language models?|ai (?:assistants?|models?|agents?|systems?)"
    r"|chatbots?|gpt|chatgpt|claude|copilot|gemini)\b"
)
# "If you are an AI researcher" is about a person, not the model.
_NOT_A_MODEL = (
    r"(?! (?:researcher|engineer|developer|enthusiast|student|practitioner|company|startup|team|expert"
    r"|scientist|specialist|professional|vendor|user|product|policy|ethics|safety)s?\b)"
)

_ROLE_OVERRIDE = (
    _p(
        r"you are now (?:"
        rf"(?:an? |the |my )?(?:{_W} ){{0,2}}{_JAILBREAK_ROLE}"
        rf"|(?:an? |the |my )(?:{_W} ){{0,2}}(?:ai|assistant|chatbot|bot|model|character|persona)\b"
        rf"|in {_W} mode\b|free (?:from|of)\b|no longer\b"
        ")"
    ),
    _p(
        r"you are no longer (?:(?:an? )?(?:ai|assistant|chatbot|language model|chatgpt|claude|gpt)\b"
        rf"|(?:bound|restricted|limited|governed|constrained) by (?:{_W} ){{0,3}}{_RESTRICTIONS})"
    ),
    _p(
        r"from now on,? you (?:will|are going to|must|shall|should) (?:only )?"
        r"(?:act|respond|answer|behave|pretend|play|roleplay|reply|speak|talk|ignore|obey)\b"
    ),
    _p(
        rf"(?:act|behave) as (?:if you (?:are|were) )?(?:an? |the )?(?:{_W} ){{0,2}}{_JAILBREAK_ROLE}",
        _JAILBREAK_WORDS,
    ),
    _p(
        rf"pretend (?:to be|you are|you're|that you are) (?:an? |the )?(?:{_W} ){{0,2}}"
        rf"(?:{_JAILBREAK_ROLE}|not an ai\b|a human\b|a different ai\b|without\b)"
    ),
    _p(
        rf"(?:pretend|roleplay|imagine) (?:that )?you (?:have|had|are under) no (?:{_W} )?{_RESTRICTIONS}",
        ("pretend", "roleplay", "imagine"),
    ),
    _p(rf"(?:roleplay|role play) as (?:an? |the )?(?:{_W} ){{0,2}}{_JAILBREAK_ROLE}"),
    _p(
        rf"(?:answer|respond|reply|act|behave|operate|talk|speak|generate|write)(?: {_W}){{0,2}} "
        rf"(?:without|with no|free of|free from) (?:any )?(?:{_W} )?{_RESTRICTIONS}",
        _RESTRICTION_WORDS,
    ),
)

_JAILBREAK = (
    _p("do anything now"),
    _p(
        r"(?:you are|you're|act as|pretend to be|become|respond as|answer as) (?:now )?dan\b"
        r"|dan (?:mode|prompt|jailbreak)\b",
        ("dan",),
    ),
    _p(
        r"(?:god|jailbreak|jailbroken|unrestricted|unfiltered|evil|sudo|no limits?"
        r"|(?:you are|you're) (?:now )?in (?:developer|dev)"
        rf"|(?:chatgpt|gpt|assistant|ai|llm|model|claude|gemini){_L}* (?:with )?(?:developer|dev)) mode\b",
        ("mode",),
    ),
    _p(r"developer mode (?:output|response)\b"),
    _p(r"stay in character\b"),
)

_SUMMARISING = ("summari", "processing", "reading", "answering", "asked")
_MODEL_DIRECTIVE = (
    _p(
        rf"(?:note|message|memo) (?:to|for) (?:the |any |all )?(?:{_MODEL_NAMES}{_NOT_A_MODEL}|assistant\s*:)",
        ("note", "message", "memo"),
    ),
    _p(rf"instructions? (?:to|for) (?:the |any |all )?(?:{_MODEL_NAMES}|assistant)\s*:"),
    _p(
        rf"(?:attention|hey|dear|hello|hi|ok|okay) {_MODEL_NAMES}\s*[:,!]",
        ("attention", "hey", "dear", "hello", "hi", "ok"),
    ),
    _p(rf"if you are (?:an? )?{_MODEL_NAMES}{_NOT_A_MODEL}"),
    _p(
        r"(?:when|while|if) (?:you are )?(?:summari[sz]ing|processing|reading|answering questions about|asked about)"
        r" (?:this|the following) (?:document|page|text|article|email|content|website|file|paper|abstract),?"
        r" (?:you (?:must|should)|always|only|say|tell|write|include|respond|reply|answer|add|insert|mention"
        r"|recommend|ignore)\b",
        _SUMMARISING,
    ),
    _p(
        r"(?:do not|don't|never) (?:tell|inform|reveal (?:this )?to|mention (?:this )?to|alert) (?:the )?user\b",
        ("user",),
    ),
)

_LEAK_VERB = (
    r"(?:print|reveal|show|repeat|display|output|tell|give|share|leak|dump|spell|recite|paste|echo|disclose"
    r"|expose|provide|translate)"
)
_LEAK_FILLER = (
    r"(?:me|us|out|back|verbatim|exactly|word|for|all|everything|of|the|your|you|in|full|entire|complete|whole"
    r"|current|actual|raw|exact|above|text|contents?)"
)
_PROMPT_WORDS = ("prompt", "message", "instructions", "directives", "rules", "guidelines", "text", "words", "content")
_SYSTEM_PROMPT_LEAK = (
    _p(
        rf"{_LEAK_VERB}(?:"
        rf"(?: {_LEAK_FILLER}){{0,5}} (?:system|your) (?:prompt|message|instructions|directives|rules|guidelines)\b"
        rf"|(?: {_LEAK_FILLER}){{0,5}} (?:initial|original|hidden|secret|internal|developer|starting|first|pre)"
        r"(?: )?(?:prompt|instructions)\b"
        rf"|(?: {_LEAK_FILLER}){{0,3}} (?:instructions|prompt|text|words|messages?|content)"
        r" (?:above|before this|you were given|you received|given to you|at the (?:start|beginning))\b"
        ")",
        _PROMPT_WORDS,
    ),
    _p(
        r"what (?:"
        r"(?:is|are|was|were|'s) your (?:exact |full |original |initial |current |first )?"
        r"(?:system prompt|system message|initial prompt|original prompt|hidden prompt|prompt|instructions|rules)\b"
        r"|(?:instructions|rules|prompt) (?:were|have|did) you (?:been )?(?:given|told|receive)"
        ")"
    ),
)

_SECRET_NOUN = (
    r"(?:api(?: )?keys?|passwords?|passwd|passphrases?|credentials|secret(?: )?keys?|access(?: )?tokens?"
    r"|auth(?:entication)?(?: )?tokens?|bearer(?: )?tokens?|private(?: )?keys?|ssh(?: )?keys?|secrets"
    r"|session(?: )?(?:cookies|tokens)|credit(?: )?card(?: )?numbers?|social(?: )?security(?: )?numbers?)\b"
    r"(?! (?:field|box|input|form|reset|policy|policies|requirements?|manager|strength|page|settings?|option"
    r"|dialog|hash|hashing|length|complexity|rotation|expiry|expiration|change|recovery)\b)"
)
# Every match of _SECRET_NOUN or _ENV_SECRET contains one of these.
_SECRET_STEMS = ("key", "passw", "passphrase", "credential", "secret", "token", "cookie", "card", "security")
_NAME_PREFIX = rf"(?:{_L}+_)*"  # inside a name: OPENAI_API_KEY, db_password
_SECRETS = rf"{_NAME_PREFIX}{_SECRET_NOUN}"
_ENV_SECRET = rf"{_NAME_PREFIX}{_L}+_(?:api_key|secret_key|access_key|access_token|auth_token|password|secret)\b"
_SECRET_FILLER = (
    r"(?:me|us|all|the|your|any|every|of|stored|saved|hidden|internal|secret|current|admin|administrator|root"
    r"|system|database|db|server|environment|env|private|user|users|other|their|its|configured|known|openai)"
)
_STRONG_QUALIFIER = r"(?:your|stored|saved|hidden|internal|admin|administrator|root|system|environment|database)"
_OWNED_SECRET = rf"{_STRONG_QUALIFIER}(?: {_SECRET_FILLER}){{0,2}} {_SECRETS}"  # "your ... API key", "stored passwords"
_LEAKY_VERBS = ("reveal", "leak", "dump", "disclose", "expose", "exfiltrate")
_SECRET_REQUEST = (
    _p(rf"{_any(_LEAKY_VERBS)}(?: {_SECRET_FILLER}){{0,4}} {_SECRETS}", _LEAKY_VERBS),
    # Verbs that also ask for harmless things need an owner or place that makes it a secret.
    _p(
        r"(?:output|print|tell me|give me|show me|list|repeat|type out|write out|spell out|send)"
        rf"(?: {_SECRET_FILLER}){{0,3}} (?:{_OWNED_SECRET}|{_ENV_SECRET})",
        _SECRET_STEMS,
    ),
    # "share": only towards the asker, as "never share your API key" is common advice
    _p(rf"share(?: {_SECRET_FILLER}){{0,3}} {_OWNED_SECRET} with (?:me|us)\b"),
    _p(rf"what (?:is|are) your {_SECRETS}"),
    _p(
        rf"{_SECRET_NOUN}(?: {_W}){{0,2}} (?:you have|you know|you can see|you have access to"
        r"|(?:in|from) your (?:context|memory|prompt|system prompt|environment|config))",
        ("you",),
    ),
)

_DELIMITER_SPOOF = (
    _p(r"<\|[a-z_]{2,24}\|>"),  # <|im_start|>, <|endoftext|>, <|start_header_id|>
    _p(r"\[/?inst\]|<</?sys>>|</s>", ("inst]", "sys>>", "</s>")),
    _p(r"</?(?:system|assistant|instructions?|sys|human)>"),
    _p(r"^[\x20\t]*#{2,}[\x20\t]*(?:system|assistant|user|instruction|human|response)[\x20\t]*:", ("##",)),
    # A fake turn: "Assistant:" at a line start after a "Human:" or "User:" line; the span
    # covers the assistant marker only.
    _p(
        r"^[\x20\t]*(?:human|user)[\x20\t]*:[^\n]*\n(?:[^\n]*\n){0,20}?[\x20\t]*(?P<mark>(?:assistant|ai)[\x20\t]*:)",
        ("human", "user"),
    ),
    _p(r"\[(?:system|sys)(?: (?:message|prompt|note|override))?\]"),
)

_TOOL_WORDS = ("function", "tool", "plugin")
_TOOL_CALL = (
    _p(r"\{\s*\"(?:tool|tool_calls?|tool_name|tool_use|function|function_call|recipient_name)\"\s*:"),
    _p(r"<(?:tool_call|tool_use|function_call|function_calls|invoke)[\s>]"),
    _p(
        rf"(?:call|invoke|use|execute|trigger) (?:the )?(?:{_W} ){{0,3}}{_any(_TOOL_WORDS)} (?:{_W} ){{0,3}}"
        r"(?:to|and) (?:send|email|post|upload|forward|transfer|exfiltrate|leak|share|wire)\b",
        _TOOL_WORDS,
    ),
    _p(
        r"(?:important|attention|system|admin|assistant|ai|llm|model|agent|chatgpt|claude)\s*[:!,]\s*"
        r"(?:you must |please |now )?"
        rf"(?:call|invoke|execute|trigger) (?:the )?(?:{_W} ){{0,3}}{_any(_TOOL_WORDS)}\b",
        _TOOL_WORDS,
    ),
)

# A query-string value that is a template slot ({...}, <...>, [...], $VAR, %7B) or, for
# images (fetched without a click), names the data to smuggle out.
_SLOT = r"(?:\{|%7b|<|\$\w|\[)"
# The URL up to its query (no "?" inside, so one way to split it), then a key and a value
# (no "&" or "=" inside, so each value is scanned once).
_QUERY_VALUE = r"https?://[^)\s?]+\?(?:[^)\s]*?[&;])?[\w.\-\[\]]+=[^)\s&=]*?"
_DATA_WORD = (
    r"(?:data|secrets?|passwords?|conversation|history|summary|context|prompt|chat|messages?|api_?key"
    r"|credentials)\b"
)
_EXFILTRATION_LINK = (
    _p(rf"!\[[^\]\n]{{0,200}}\]\(\x20*{_QUERY_VALUE}(?:{_SLOT}|{_DATA_WORD})", ("http",)),
    _p(rf"\[[^\]\n]{{0,200}}\]\(\x20*{_QUERY_VALUE}{_SLOT}", ("http",)),
    _p(
        rf"(?:send|post|forward|upload|transmit|exfiltrate|leak|append|encode)(?: {_W}){{0,6}}?"
        r" (?:conversation|chat|history|secrets?|passwords?|credentials|api keys?|tokens?|system prompt|user's"
        rf"|previous messages)(?: {_W}){{0,4}}? (?:to|into|in) (?:the |this )?(?:url |endpoint |server |webhook )?"
        r"(?:https?:|www\.)",
        ("http", "www."),
    ),
)

# Evaluated over folded text, each with the rule it reports.
RULES: tuple[tuple[str, tuple[_Pattern, ...]], ...] = (
    ("ignore_instructions", _IGNORE_INSTRUCTIONS),
    ("new_instructions", _NEW_INSTRUCTIONS),
    ("role_override", _ROLE_OVERRIDE),
    ("jailbreak", _JAILBREAK),
    ("model_directive", _MODEL_DIRECTIVE),
    ("system_prompt_leak", _SYSTEM_PROMPT_LEAK),
    ("secret_request", _SECRET_REQUEST),
    ("delimiter_spoof", _DELIMITER_SPOOF),
    ("tool_call", _TOOL_CALL),
    ("exfiltration_link", _EXFILTRATION_LINK),
)
