// Package linearscope is the scope policy of the linear_graphql tool: the
// check a GraphQL document an agent sends must pass before the tracker runs it
// against Linear with the operator's key.
//
// Why a policy at all: the agent acts on its own issue, but the key it borrows
// reaches the whole workspace, and issue text is outside input (a prompt
// injection can ask the agent to do anything the tool allows). So the default
// policy, [PolicyScoped], lets the agent read anything but change only its own
// issue, through a short allow-list of mutations whose target is resolved
// statically from the document and its variables. [PolicyAny] is the
// reference implementation's behaviour (no check beyond size), [PolicyOff]
// refuses every call.
//
// The check is pure: it parses and validates the document against Linear's
// schema (embedded, parsed once per process), reads the variables, and decides.
// It never talks to Linear, so it cannot know what an ID names; that is why a
// mutation's target must be written as the run's own issue id or identifier,
// and why input fields that name other objects (parentId, teamId, projectId,
// …) are refused rather than looked up.
//
// Work is bounded before the validator runs: the document's size and token
// count, the variables' size, and the depth and number of selections (fragment
// spreads expanded, with a budget, so a fragment "billion laughs" or a spread
// cycle costs at most the budget). A refusal is a *[Refusal] that names the
// rule; the tracker returns its message to the agent as a failure result and
// the session goes on.
package linearscope
