// Package mcpserver is a run's MCP server (`symphony mcp`, issue #21): the
// bridge between the agent's MCP client (claude, started with the MCP config
// Symphony writes for the run) and the tools the tracker runs host-side.
//
// The server is a child of the agent, so it holds only what the agent may
// see: the run's tool credential (bus.ToolGrant), which lets it ask two
// subjects of its own run and nothing else. It never holds the tracker key:
// every call crosses the bus to the agentrunner, which adds the run's issue
// and has the tracker run the tool with its own credential; the answer comes
// back as a result the agent reads.
//
// The tool list is asked once, at start: a run's tools are fixed at
// dispatch (a workflow reload applies to later runs), so the server
// advertises no list changes. Every failure the agent can cause or meet is
// a tool result with isError set (bad arguments, a refused call, a run that
// has ended and whose credential was revoked), never a crash: the agent
// reads why and its session goes on. Arguments are outside input, bounded
// by bus.ToolArgumentsMaxBytes before they are forwarded.
package mcpserver
