package main

import (
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/mcpserver"
)

// McpCmd is `symphony mcp`: a run's MCP server, started by the agent (claude)
// from the MCP config Symphony writes for the run.
type McpCmd struct{}

// mcpMaxLine bounds one JSON-RPC message from the agent: a tool call's
// arguments are bounded far below it (bus.ToolArgumentsMaxBytes), so a
// longer line is not a call worth buffering.
const mcpMaxLine = 1 << 20

// Run serves the run's tools over stdin and stdout until stdin closes.
// Stdout is the protocol: the logs go to stderr, which claude keeps for
// the server's diagnostics.
func (McpCmd) Run(g *Globals, e *env) error {
	grant, err := bus.ToolGrantFromEnv(os.Getenv)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	return mcpserver.Serve(e.ctx, grant, &mcp.StdioTransport{MaxLineLength: mcpMaxLine}, g.logger(e.stderr))
}
