#!/usr/bin/env node
// A minimal MCP client (the official TypeScript SDK) for trying Mandate by hand.
//
//   node examples/mcp-call.mjs URL TOKEN list
//   node examples/mcp-call.mjs URL TOKEN call TOOL '{"arg":"value"}'
//
// URL is Mandate's MCP endpoint for one upstream, e.g. http://127.0.0.1:8080/mcp/everything;
// TOKEN is what `mandate session start` printed. The SDK comes from tests/e2e/node_modules
// (installed by `make run` / `make test`).
const sdk = new URL('../tests/e2e/node_modules/@modelcontextprotocol/sdk/dist/esm/', import.meta.url);
const { Client } = await import(new URL('client/index.js', sdk));
const { StreamableHTTPClientTransport } = await import(new URL('client/streamableHttp.js', sdk));

const [url, token, command, tool, args] = process.argv.slice(2);
if (!url || !token || !['list', 'call'].includes(command) || (command === 'call' && !tool)) {
  console.error('usage: mcp-call.mjs URL TOKEN list | call TOOL [JSON_ARGS]');
  process.exit(2);
}

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: 'mandate-example', version: '1.0.0' });
try {
  await client.connect(transport);
  if (command === 'list') {
    const { tools } = await client.listTools();
    for (const t of tools) console.log(`${t.name}\t${t.description ?? ''}`);
  } else {
    const result = await client.callTool({ name: tool, arguments: args ? JSON.parse(args) : {} });
    for (const c of result.content ?? []) console.log(c.type === 'text' ? c.text : JSON.stringify(c));
    if (result.isError) process.exitCode = 1;
  }
} catch (err) {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
} finally {
  await client.close().catch(() => {});
}
