"""nanoChatGPT: public dialogue corpora -> validated turn table -> token shards -> a GPT chat model."""

__version__ = "0.1.0"
