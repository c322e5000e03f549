// Package testkit holds the test doubles of the module, in packages of
// their own so that the tests of any package can import them:
//
//   - fakeagent: a stand-in for the claude CLI that can hang, crash, flood
//     stderr or leave a daemon behind on demand (its main is
//     testkit/cmd/fakeagent, built by fakeagent.Build);
//   - mockanthropic: a scripted Anthropic Messages API server that drives
//     the real claude CLI offline (the demo uses it too);
//   - mockopenai: a scripted OpenAI Responses API server that drives the
//     real `codex app-server` offline (CodexHome writes its config);
//   - mockserver: what the two model mocks share (the loopback server,
//     the scripted, recorded conversation and its waits);
//   - natscluster: a real NATS cluster with JetStream on 127.0.0.1
//     (in-process servers joined by routes) for `symphony run --nats`,
//     whose servers a test stops and restarts.
//
// ToolPath finds the real clients the tests run.
//
// They are kept out of internal/, which holds the helpers Symphony is made
// of, and out of the symphony binary: only tests, testkit itself and the
// developer programs under devtools/ import them. architecture_test.go
// checks both.
package testkit
