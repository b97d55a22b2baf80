// An independent OPC UA client (node-opcua) for the simulator's interoperability tests.
//
//   node opcua_client.js write URL NAMESPACE_URI JSON [--lifetime 30]
//       JSON: [{"id": "B001/intrusion/arm_request", "type": "Int32", "value": 2}, ...]
//       ONE Write service call with every WriteValue, then one Read of the same nodes; prints
//       {"statuses": ["Good", "BadOutOfRange", ...], "values": [...]} and exits
//   node opcua_client.js watch URL NAMESPACE_URI ID [--lifetime 30]
//       subscribes to the node's value (publishing 50 ms, sampling 0) and prints
//       {"ready": true} once the monitored item exists, then for every notification
//       {"value": ..., "source_ms": <SourceTimestamp, epoch ms>, "server_ms": ..., "received_ms": ...}
//
// Every line on stdout is one JSON object (node-opcua's own log lines may be interleaved: the test
// skips lines that are not JSON). Anonymous, no security, 127.0.0.1 only (the URL the test gives).
// It exits by itself after --lifetime seconds, and as soon as stdin closes (the test went away).
"use strict";

const readline = require("readline");
const {
    AttributeIds, DataType, MessageSecurityMode, OPCUAClient, SecurityPolicy, TimestampsToReturn,
    ClientMonitoredItem, coerceNodeId,
} = require("node-opcua-client");

function option(name, fallback) {
    const at = process.argv.indexOf(`--${name}`);
    return at >= 0 ? process.argv[at + 1] : fallback;
}

const [mode, url, namespaceUri, arg] = process.argv.slice(2);
const lifetimeS = Number(option("lifetime", "30"));
setTimeout(() => process.exit(0), lifetimeS * 1000).unref();
readline.createInterface({ input: process.stdin }).on("close", () => process.exit(0));

function print(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function plain(value) {
    // a JSON-friendly form of a decoded value (numbers, booleans and strings as they are)
    if (value === null || value === undefined) {
        return null;
    }
    if (typeof value === "bigint") {
        return Number(value);
    }
    return typeof value === "object" ? String(value) : value;
}

async function main() {
    const client = OPCUAClient.create({
        applicationName: "city-scada test peer client",
        endpointMustExist: false,
        securityMode: MessageSecurityMode.None,
        securityPolicy: SecurityPolicy.None,
        connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    });
    await client.connect(url);
    const session = await client.createSession();
    const namespaces = await session.readNamespaceArray();
    const ns = namespaces.indexOf(namespaceUri);
    if (ns < 0) {
        throw new Error(`namespace ${namespaceUri} not served (${namespaces.join(", ")})`);
    }
    const node = (id) => coerceNodeId(`ns=${ns};s=${id}`);

    if (mode === "write") {
        const items = JSON.parse(arg);
        const statuses = await session.write(items.map((item) => ({
            nodeId: node(item.id),
            attributeId: AttributeIds.Value,
            value: { value: { dataType: DataType[item.type], value: item.value } },
        })));
        const read = await session.read(items.map((item) => ({ nodeId: node(item.id), attributeId: AttributeIds.Value })));
        print({ statuses: statuses.map((s) => s.name), values: read.map((dv) => plain(dv.value.value)) });
        await session.close();
        await client.disconnect();
        process.exit(0);
    } else if (mode === "watch") {
        const subscription = await session.createSubscription2({
            requestedPublishingInterval: 50, requestedLifetimeCount: 1000, requestedMaxKeepAliveCount: 20,
            maxNotificationsPerPublish: 0, publishingEnabled: true, priority: 1,
        });
        const item = await ClientMonitoredItem.create(subscription,
            { nodeId: node(arg), attributeId: AttributeIds.Value },
            { samplingInterval: 0, discardOldest: true, queueSize: 10 },
            TimestampsToReturn.Both);
        item.on("changed", (dv) => {
            print({
                value: plain(dv.value.value),
                status: dv.statusCode.name,
                source_ms: dv.sourceTimestamp ? dv.sourceTimestamp.getTime() : null,
                server_ms: dv.serverTimestamp ? dv.serverTimestamp.getTime() : null,
                received_ms: Date.now(),
            });
        });
        print({ ready: true });
    } else {
        throw new Error(`mode must be write or watch, got ${mode}`);
    }
}

main().catch((err) => {
    print({ error: String(err && err.message ? err.message : err) });
    process.exit(2);
});
