"""The OpenAI-compatible interactive surface: `/v1/chat/completions`, `/v1/embeddings`,
`/v1/models` (`endpoints`) and the chat socket `/v1/chat/ws` (`websocket`), served from the
inference service (`inference`) without jobs. It shares only the neutral edge modules with the
job API (state, errors, bodies, codec, auth, streams); `pyproject.toml`'s import contracts
keep the two apart.
"""
