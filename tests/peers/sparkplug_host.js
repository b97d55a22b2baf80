// An independent Sparkplug B peer: Eclipse Tahu's JavaScript codec (sparkplug-payload) over the `mqtt` client.
//
//   node sparkplug_host.js mqtt://127.0.0.1:PORT GROUP [LIFETIME_S]
//
// Subscribes to spBv1.0/GROUP/# and prints one JSON line per message, decoded by Tahu's codec:
//   {"topic": ..., "type": "NBIRTH", "node": ..., "device": ..., "seq": n, "metrics": [{name, alias, type, value,
//    isHistorical, properties: {Quality: {type, value}, engUnit: ...}}]}
// (64-bit integers printed as decimal strings). First line {"ready": true} once subscribed.
// Commands, one per stdin line:  rebirth NODE  → publishes Tahu's NCMD "Node Control/Rebirth" = true
// Bounded: exits after LIFETIME_S (default 60) and when stdin closes. Connects to 127.0.0.1 only (the URL given).
"use strict";

const mqtt = require("mqtt");
const sparkplug = require("sparkplug-payload").get("spBv1.0");
const readline = require("readline");

const [url, group, lifetime] = process.argv.slice(2);
setTimeout(() => process.exit(0), Number(lifetime || 60) * 1000).unref();

function isLong(v) {
    return v !== null && typeof v === "object" && "low" in v && "high" in v && "unsigned" in v;
}

function out(obj) {
    process.stdout.write(JSON.stringify(obj, (_k, v) => (isLong(v) || typeof v === "bigint" ? v.toString() : v)) + "\n");
}

const client = mqtt.connect(url, { clientId: `tahu-peer-${process.pid}`, reconnectPeriod: 500 });
client.on("connect", () => {
    client.subscribe(`spBv1.0/${group}/#`, { qos: 1 }, (err) => out(err ? { error: String(err) } : { ready: true }));
});
client.on("message", (topic, message) => {
    const parts = topic.split("/");
    try {
        const payload = sparkplug.decodePayload(message);
        out({ topic, type: parts[2], node: parts[3], device: parts[4] || null, seq: payload.seq,
              metrics: payload.metrics || [] });
    } catch (e) {
        out({ topic, error: String(e) });
    }
});

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
    const [cmd, node] = line.trim().split(/\s+/);
    if (cmd === "rebirth") {
        const payload = sparkplug.encodePayload({
            timestamp: Date.now(),
            metrics: [{ name: "Node Control/Rebirth", type: "Boolean", value: true }],
        });
        client.publish(`spBv1.0/${group}/NCMD/${node}`, Buffer.from(payload), { qos: 0 }, (err) =>
            out(err ? { error: String(err) } : { sent: "NCMD", node }));
    } else {
        out({ error: `unknown command ${cmd}` });
    }
});
rl.on("close", () => {
    client.end(true);
    process.exit(0);
});
