"""The agent: campaign loop, proposers, LLM client, feedback, config and the `discover` CLI."""
