"""The Valkey stores both planner processes open: the job event log (the worker appends,
the server reads and tails it through its hub) and the chat sessions (the worker loads and
appends turns, the server answers GetChatSession)."""
