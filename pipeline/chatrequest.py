"""An OpenAI-style chat request, checked and mapped onto the chat format the model was trained on.

ChatRequest.parse validates a chat completions body: `system` (or `developer`) messages become the
persona, `user` turns <human> turns, `assistant` turns <bot> turns, each message cleaned as training
text was (Conversation), with the sampling knobs and stop strings range-checked (OpenAI's ranges,
where OpenAI's API refuses a value); a bad field raises
RequestError naming it, and what the server cannot give (tools, JSON mode, logprobs, audio) is
refused by refuse_unsupported rather than answered with plain text. The Responses API
(pipeline/responsesapi.py) builds a ChatRequest from its own body (ChatRequest.build, FieldNames for
the names its errors use). Serving it is pipeline/chatapi.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pipeline.chatsession import clean_text, not_utf8_text
from pipeline.invisible import blank_text
from pipeline.stops import MAX_STOP_CHARS, MAX_STOP_STRINGS, check_stop_strings

PERSONA_ROLES = frozenset(
    {"system", "developer"}
)  # OpenAI's newer models call the system message `developer`


ROLES = PERSONA_ROLES | {"user", "assistant"}


class RequestError(ValueError):
    """A bad request: becomes a 400 reply (or `status`) naming the offending field (`param`)."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: HTTPStatus = HTTPStatus.BAD_REQUEST,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code  # OpenAI's machine-readable reason, where it has one (context_length_exceeded)


# OpenAI's code for a request that does not fit the context window: clients that shorten the
# history on it (rather than parse the message) need it spelled so.
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
# OpenAI's codes for a field's value it refuses (the openai SDKs expose it as the error's `.code`):
# a number out of range says which bound and whether the field is an integer or a decimal, as
# {"param": "temperature", "code": "decimal_above_max_value"}; a value of the wrong JSON type is
# invalid_type; one outside a field's set of choices is invalid_value; one OpenAI takes but this
# server does not (n=2) is unsupported_value, as OpenAI says of a value a model does not take.
INVALID_TYPE = "invalid_type"
INVALID_VALUE = "invalid_value"
UNSUPPORTED_VALUE = "unsupported_value"
ARRAY_ABOVE_MAX_LENGTH = "array_above_max_length"
STRING_ABOVE_MAX_LENGTH = "string_above_max_length"
# OpenAI's code for a parameter its endpoint does not have ("Unknown parameter: 'stop'.").
UNKNOWN_PARAMETER = "unknown_parameter"

# The Responses API's fields, sent to chat completions: what each is called here. Ignored, they
# came back 200 as something else: `instructions` beside `messages` lost the persona, and
# `max_output_tokens` 3 gave a reply of the default 32 tokens.
RESPONSES_ONLY_FIELDS = {
    "max_output_tokens": "the reply budget here is `max_completion_tokens` (or `max_tokens`)",
    "instructions": "send the persona as a `system` message in `messages`",
    "input": "the conversation here is `messages`",
}


def range_code(value: float, low: float, kind: type) -> str:
    """OpenAI's code for `value` outside its field's range: below `low`, or else above the top;
    `kind` int (integer_...) or float (decimal_...)."""
    number = "integer" if kind is int else "decimal"
    return f"{number}_below_min_value" if value < low else f"{number}_above_max_value"


def refuse_unsupported(body: dict[str, Any]) -> None:
    """A 400 for what the client asked of the reply that this server cannot give. Ignored, these
    came back 200 with plain text: an agent read "the model chose no tool", a JSON-mode client
    crashed in json.loads, a logprobs reader found no logprobs, an audio client found no audio.
    (Sampling knobs it does not have, presence/frequency penalties and logit_bias, only shade the
    text: those are ignored, as the README says, once _check_ignored_knobs finds them in OpenAI's
    ranges.)"""
    for key in ("tools", "functions"):
        if body.get(key):
            raise RequestError(f"`{key}` is not supported: this model cannot call tools", key)
    for key in ("tool_choice", "function_call"):
        if body.get(key) not in (None, "none", "auto"):  # "required" or a named tool demands a call
            raise RequestError(f"`{key}` is not supported: this model cannot call tools", key)
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise RequestError(
            'only `response_format` {"type": "text"} is supported (no JSON mode)', "response_format"
        )
    for key, off in (("logprobs", (None, False)), ("top_logprobs", (None, 0))):
        if body.get(key) not in off:
            raise RequestError("log-probabilities are not supported", key)
    # Audio out: the reply's message.audio would be null, and the client reading it crashed.
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or any(m != "text" for m in modalities)):
        raise RequestError('only `modalities` ["text"] is supported (no audio output)', "modalities")
    if body.get("audio"):
        raise RequestError("`audio` output is not supported: this model writes text only", "audio")


def refuse_other_apis_fields(body: dict[str, Any], fields: dict[str, str], theirs: str, this: str) -> None:
    """A 400 for a field of the other API (`theirs`), set to anything but null: `fields` maps each to
    what to send to this one instead. Checked last, so that a body with other mistakes keeps the
    error it had: these fields were ignored before."""
    for key, instead in fields.items():
        if body.get(key) is not None:
            raise RequestError(
                f"`{key}` is a {theirs} field, not a {this} one: {instead}", key, code=UNKNOWN_PARAMETER
            )


@dataclass(frozen=True)
class FieldNames:
    """What an API calls the parts of a request that its errors are about (the `param` they name)."""

    conversation: str = "messages"  # the turns (/v1/responses: input)
    persona: str = "messages"  # the field to shorten when the persona leaves no room
    persona_text: str = "the system message"  # the persona, as an error message calls it
    budget: str = "max_tokens"  # the reply budget, as the client named it


CHAT_FIELDS = FieldNames()


class Conversation:
    """Messages in, one role and text at a time; the chat format out (see ChatRequest).

    Each message is cleaned before it joins, and an empty one is left out (it neither joins nor
    opens a turn): how normalize built the training text from such messages (adapters/_messages.py;
    normalize drops empty rows, then merges same-role runs)."""

    def __init__(self) -> None:
        self.persona: list[str] = []
        # (role, its messages' texts): a run of one role's messages joins once at the end, since
        # joining at each message costs the square of the run (35,000 of them fit in 1 MiB).
        self.turns: list[tuple[str, list[str]]] = []

    def add(self, role: str, content: str, where: str) -> None:
        """One message: `role` one of ROLES, `content` its text, `where` the field it came in."""
        _refuse_lone_surrogates(content, where)
        try:
            text = clean_text(content, bot=role == "assistant")  # a reply sent back, as chat keeps it
        except ValueError as e:  # a run of combining marks or whitespace too long to take safely
            raise RequestError(f"{where}: {e}", where) from None
        # Blank as normalize has it (invisible characters alone too): no turn, and no persona.
        if blank_text(text):
            return
        if role in PERSONA_ROLES:  # anywhere, as OpenAI takes them: the persona, as in training
            self.persona.append(text)
            return
        turn = "human" if role == "user" else "bot"
        if not self.turns and turn == "bot":  # a greeting before the first user message: left out, as
            return  # normalize leaves out bot rows before a conversation's first human turn
        if self.turns and self.turns[-1][0] == turn:  # consecutive messages of one role read as one turn
            self.turns[-1][1].append(text)
        else:
            self.turns.append((turn, [text]))

    def fields(self, param: str) -> dict[str, Any]:
        """ChatRequest's context, history and user_text; a 400 on `param` unless a user turn is last."""
        if not self.turns or self.turns[-1][0] != "human":
            raise RequestError(
                "the last message must be a user message with text (empty messages are left out, as in "
                "training)",
                param,
            )
        return {
            "context": "\n".join(self.persona) or None,
            "history": [(role, "\n".join(texts)) for role, texts in self.turns[:-1]],
            "user_text": "\n".join(self.turns[-1][1]),
        }


@dataclass
class ChatRequest:
    """A validated request: a /v1/chat/completions body, or the part of a /v1/responses one that
    generates (pipeline/responsesapi.py)."""

    context: str | None
    history: list[tuple[str, str]]  # (human | bot, text), before the last user message
    user_text: str
    max_tokens: int | None = None
    names: FieldNames = CHAT_FIELDS  # how the client's API names the fields (for error messages)
    temperature: float = 1.0  # OpenAI's defaults
    top_p: float | None = 1.0
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage, as OpenAI's
    keep_all_turns: bool = False  # a 400 rather than drop the oldest turns (Responses' truncation "disabled")

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        body = request_object(body)
        n = _optional(body, ("n",), int)
        if n is not None and n != 1:  # OpenAI takes 1..128: more is this server's limit, not a bad value
            code = UNSUPPORTED_VALUE if n > 1 else range_code(n, 1, int)
            raise RequestError("only n=1 is supported", "n", code=code)
        refuse_unsupported(body)
        conversation = Conversation()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("`messages` must be a non-empty list", "messages")
        for i, m in enumerate(messages):
            where = f"messages[{i}]"
            role = m.get("role") if isinstance(m, dict) else None
            if not isinstance(role, str) or role not in ROLES:  # a list or object is no role (nor hashable)
                raise RequestError(f"{where}.role must be one of {sorted(ROLES)}", f"{where}.role")
            content = m.get("content")
            if role == "assistant":
                # OpenAI's assistant message may have a null (or no) content: the one that made
                # tool calls has none. Empty, then, like "" (left out); its tool calls are refused
                # rather than dropped unseen, as a request's `tools` are (refuse_unsupported).
                for key in ("tool_calls", "function_call"):
                    if m.get(key):
                        raise RequestError(f"{where}.{key}: this model cannot call tools", f"{where}.{key}")
                content = "" if content is None else content
            conversation.add(
                role, content_text(content, f"{where}.content", CHAT_TEXT_PARTS), f"{where}.content"
            )
        budget = ("max_completion_tokens", "max_tokens")  # the newer name first, as OpenAI reads them
        given = next((key for key in budget if body.get(key) is not None), "max_tokens")
        req = cls.build(body, conversation.fields("messages"), budget, FieldNames(budget=given))
        # stream_options and stop are checked before the values' ranges (check_values), as they
        # always were: a body with several mistakes is still answered with the same one.
        include = (body.get("stream_options") or {}).get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise RequestError("`stream_options.include_usage` must be true or false", "stream_options")
        req.include_usage = bool(include)
        stop = body.get("stop")
        if not (stop is None or isinstance(stop, (str, list))):
            raise RequestError(
                f"`stop` must be a string or a list of up to {MAX_STOP_STRINGS} strings",
                "stop",
                code=INVALID_TYPE,
            )
        try:
            req.stop = list(check_stop_strings(stop))
        except ValueError as e:
            raise RequestError(f"`stop`: {e}", "stop", code=_stop_code(stop)) from None
        for s in req.stop:  # the reply is UTF-8 text: a stop with a lone surrogate would never match
            _refuse_lone_surrogates(s, "stop")
        req.check_values()
        # Last, so that a body with several mistakes keeps the error it had before these were checked.
        _check_ignored_knobs(body)
        check_strings(body, ("model", "user"))
        for i, m in enumerate(messages):  # each a dict with a role by now (the loop above)
            check_strings(m, ("name",), f"messages[{i}].")
        req.refuse_stray_stream_options(body)
        refuse_other_apis_fields(body, RESPONSES_ONLY_FIELDS, "/v1/responses", "/v1/chat/completions")
        return req

    @classmethod
    def build(
        cls, body: dict[str, Any], turns: dict[str, Any], budget_keys: tuple[str, ...], names: FieldNames
    ) -> ChatRequest:
        """The request from its `turns` (Conversation.fields) and what every API's body sets alike:
        the reply budget (the first of `budget_keys` given), sampling and `stream`, each of the
        right type. Their ranges are check_values()'s, which the caller runs after its own fields'."""
        req = cls(
            **turns,
            max_tokens=_optional(body, budget_keys, int),
            names=names,
            temperature=_optional(body, ("temperature",), float, 1.0),
            top_p=_optional(body, ("top_p",), float, 1.0),
            top_k=_optional(body, ("top_k",), int),
            seed=_optional(body, ("seed",), int),
        )
        if req.top_k is not None and req.top_k < 0:  # SamplingParams would say "unset"
            raise RequestError(
                f"top_k must be >= 1, or 0 or null for no limit, got {req.top_k}",
                "top_k",
                code=range_code(req.top_k, 0, int),
            )
        req.top_k = req.top_k or None  # 0 = no limit (as vLLM)
        req.stream = flag(body, "stream", False)
        if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
            raise RequestError("`stream_options` must be an object", "stream_options")
        return req

    def refuse_stray_stream_options(self, body: dict[str, Any]) -> None:
        """OpenAI's 400 (both APIs) for `stream_options` without `stream: true`: a client that asked
        for usage in a stream and got a whole reply would wait for a usage chunk that never comes."""
        if body.get("stream_options") is not None and not self.stream:
            raise RequestError("`stream_options` is only allowed when `stream` is true", "stream_options")

    def check_values(self) -> None:
        """A 400 for a reply budget under 1 or a sampling value out of range; `seed` becomes the
        sampler's (see _sampler_seed)."""
        if self.max_tokens is not None and self.max_tokens < 1:
            raise RequestError(
                f"{self.names.budget} must be at least 1",
                self.names.budget,
                code=range_code(self.max_tokens, 1, int),
            )
        from pipeline.sampling import SamplingParams  # imports torch: not at the CLI's start-up

        seed = _sampler_seed(self.seed)
        try:
            SamplingParams(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, seed=seed)
        except ValueError as e:  # the message starts with the field's name
            name = str(e).split()[0]
            raise RequestError(str(e), name, code=self._sampling_code(name)) from None
        # after SamplingParams, which checks the seed last: the first mistake named stays the same
        if self.seed is not None and not INT64[0] <= self.seed <= INT64[1]:
            raise RequestError(
                f"seed must be in {INT64[0]}..{INT64[1]} (a 64-bit integer), got {self.seed}",
                "seed",
                code=range_code(self.seed, INT64[0], int),
            )
        # OpenAI's range (the sampler, and so chat's --temperature, takes any finite value >= 0):
        # a client tested here would be refused there. After the sampler's checks, as it was accepted
        # before: a body with several mistakes keeps the error it had.
        if self.temperature > MAX_TEMPERATURE:
            raise RequestError(
                f"temperature must be in [0, {MAX_TEMPERATURE:g}], got {self.temperature}",
                "temperature",
                code=range_code(self.temperature, 0.0, float),
            )
        self.seed = seed

    def _sampling_code(self, name: str) -> str:
        """The range code of the sampling value SamplingParams refused (each has 0 as its floor;
        the seed, wrapped into the sampler's range first, never is)."""
        if name == "top_k":
            return range_code(self.top_k or 0, 1, int)
        value = self.top_p if name == "top_p" else self.temperature
        return range_code(value if value is not None else 0.0, 0.0, float)


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    """A true/false field (null or absent: `default`)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"`{key}` must be true or false", key, code=INVALID_TYPE)
    return value


def request_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


INT64 = (-(2**63), 2**63 - 1)  # OpenAI's seed: any signed 64-bit integer
MAX_TEMPERATURE = 2.0  # OpenAI's temperature is in [0, 2]
PENALTIES = ("presence_penalty", "frequency_penalty")  # OpenAI's range: [-2, 2]
MAX_LOGIT_BIAS = 100  # OpenAI's logit_bias values: [-100, 100]


def _check_ignored_knobs(body: dict[str, Any]) -> None:
    """A 400 for a penalty or logit_bias that OpenAI refuses: they are ignored here (they only shade
    the text), but a value out of range taken with a 200 let a client's bug pass here and fail on
    OpenAI's API."""
    for key in PENALTIES:
        value = _optional(body, (key,), float)
        if value is not None and not -2.0 <= value <= 2.0:  # _optional refuses NaN
            raise RequestError(
                f"`{key}` must be in [-2, 2], got {value}", key, code=range_code(value, -2.0, float)
            )
    bias = body.get("logit_bias")
    if bias is None:
        return
    wrong = RequestError(
        "`logit_bias` must be an object of token ids (digits) to numbers in "
        f"[-{MAX_LOGIT_BIAS}, {MAX_LOGIT_BIAS}]",
        "logit_bias",
        code=INVALID_VALUE,
    )
    if not isinstance(bias, dict):
        raise wrong
    for token, value in bias.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (
            not (token.isascii() and token.isdigit())
            or not number
            or not -MAX_LOGIT_BIAS <= value <= MAX_LOGIT_BIAS
        ):
            raise wrong


def check_strings(body: dict[str, Any], keys: tuple[str, ...], where: str = "") -> None:
    """A 400 for each of `keys` set to anything but a string or null: fields that only name things
    (the model, the end user, a message's author), ignored here, which OpenAI refuses of another
    type; taken with a 200, `"model": ["gpt-4o"]` or `"user": {"id": 1}` let a client's bug pass
    here and fail there. `where` prefixes the field's name: `messages[2].` for a message's."""
    for key in keys:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise RequestError(f"`{where}{key}` must be a string", f"{where}{key}", code=INVALID_TYPE)


def _stop_code(stop: str | list[Any]) -> str:
    """OpenAI's code for the `stop` check_stop_strings refused: too many, one too long, or one
    empty or not a string."""
    if isinstance(stop, list) and len(stop) > MAX_STOP_STRINGS:
        return ARRAY_ABOVE_MAX_LENGTH
    strings = [stop] if isinstance(stop, str) else stop
    if any(isinstance(s, str) and len(s) > MAX_STOP_CHARS for s in strings):
        return STRING_ABOVE_MAX_LENGTH
    return INVALID_VALUE


def _sampler_seed(seed: int | None) -> int | None:
    """OpenAI's `seed` (int64) as the sampler takes it (0..MAX_SEED): a negative seed wraps to its
    two's complement's low 63 bits, as torch remaps a negative seed to an unsigned one. Each seed is
    one generator seed, so the same seed gives the same text (a negative seed shares its generator
    with one positive seed, as OpenAI promises only that the same seed repeats)."""
    if seed is None:
        return None
    from pipeline.sampling import MAX_SEED

    return seed % (MAX_SEED + 1)


CHAT_TEXT_PARTS = frozenset({"text"})


def content_text(content: Any, where: str, kinds: frozenset[str]) -> str:
    """A message's text: a string, or a list of parts of which only text parts (of a type in
    `kinds`, each with its `text`) are allowed."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or not isinstance(part.get("type"), str)  # a list is no type (nor hashable)
                or part["type"] not in kinds
                or not isinstance(part.get("text"), str)
            ):
                raise RequestError(f"{where}[{j}]: only text parts are supported", where)
            texts.append(part["text"])
        return "\n".join(texts)  # as the training adapters join parts (adapters/_messages.py)
    raise RequestError(f"{where} must be a string or a list of text parts", where)


def _refuse_lone_surrogates(text: str, where: str) -> None:
    """A 400 for a lone surrogate (JSON's "\\ud800" without its pair): no Unicode character, so no
    UTF-8 text; tiktoken silently turned it into U+FFFD, and the model read other text than sent."""
    message = not_utf8_text(text, where)
    if message is not None:
        raise RequestError(message, where)


def _optional(body: dict, keys: tuple[str, ...], kind: type, default: Any = None) -> Any:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        wrong = RequestError(
            f"`{key}` must be a{'n integer' if kind is int else ' number'}", key, code=INVALID_TYPE
        )
        # bool is an int in Python; a JSON true is never a number here.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        try:  # NaN and infinities (Python's json reads them) and integers past a float's range
            if kind is int and value != int(value):
                raise wrong
            return kind(value)
        except (ValueError, OverflowError):
            raise wrong from None
    return default
