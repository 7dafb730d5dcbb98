"""The OpenAI-compatible gateway every agent framework talks to: auth per episode, chat-template rendering,
tool-call parsing, recording of every call. Import the parts from their modules (`ajet.core.gateway.app`,
`.backends`, `.render`, `.tool_parsers`, `.keys`, `.schemas`); this package stays empty so that importing a
small part (keys, parsers) does not pull in starlette or httpx."""
