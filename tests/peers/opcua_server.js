// An independent OPC UA server (node-opcua) for the driver's interoperability tests.
//
//   node opcua_server.js --lifetime 60 [--port 0] [--secure --pki DIR]
//
// Listens on 127.0.0.1 (port 0: the OS picks), prints ONE JSON line on stdout when ready:
//   {"url": "opc.tcp://127.0.0.1:PORT/peer", "port": PORT, "certificate": "<server certificate (PEM) or null>"}
// then reads commands from stdin, one per line, and answers each with a JSON line:
//   morph   the four odd/* variables take non-numeric values (DateTime, LocalizedText, NodeId,
//           StatusCode) and every num/* variable takes a new number, in the same instant (so a
//           subscriber gets them in one notification batch)
//   bump    every num/* variable takes a new number (the odd ones are left alone)
//   u16     prints the current value of num/u16
//   trust PATH   (--secure) trust the client certificate in PATH (DER or PEM) from now on
// It exits by itself after --lifetime seconds, and as soon as stdin closes (the test went away).
//
// Address space (namespace urn:test:peer, string node ids):
//   peer/num/a, peer/num/b, peer/num/c   Double             1.5, 2.5, 3.5
//   peer/num/u16                         UInt16, writable   7
//   peer/odd/datetime .. odd/status      BaseDataType       0.0 until "morph"
//
// --secure: the only endpoint is Basic256Sha256 SignAndEncrypt, and unknown client certificates
// are NOT accepted (the server's PKI lives in DIR/server, its trust list starts empty; node-opcua
// creates the server's own self-signed certificate there): a real server's answer to a client it
// does not trust is a fault to OpenSecureChannel (BadSecurityChecksFailed).
"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const {
    DataType, LocalizedText, MessageSecurityMode, SecurityPolicy, StatusCodes, Variant, coerceNodeId,
} = require("node-opcua-client");

function option(name, fallback) {
    const at = process.argv.indexOf(`--${name}`);
    return at >= 0 ? process.argv[at + 1] : fallback;
}

const lifetimeS = Number(option("lifetime", "60"));
const port = Number(option("port", "0"));
const secure = process.argv.includes("--secure");
const pki = option("pki", null);

// bounded lifetime: a test that crashes never leaves this process behind
setTimeout(() => process.exit(0), lifetimeS * 1000).unref();

async function main() {
    const options = {
        port,
        host: "127.0.0.1", // listen on the loopback only
        hostname: "127.0.0.1",
        alternateHostname: ["127.0.0.1"],
        resourcePath: "/peer",
        buildInfo: { productName: "city-scada test peer", manufacturerName: "tests" },
    };
    if (secure) {
        if (!pki) {
            throw new Error("--secure needs --pki DIR");
        }
        const serverCertificateManager = new OPCUACertificateManager({
            rootFolder: path.join(pki, "server"),
            automaticallyAcceptUnknownCertificate: false,
        });
        await serverCertificateManager.initialize();
        Object.assign(options, {
            serverCertificateManager,
            securityPolicies: [SecurityPolicy.Basic256Sha256],
            securityModes: [MessageSecurityMode.SignAndEncrypt],
            allowAnonymous: true,
        });
    } else {
        Object.assign(options, {
            securityPolicies: [SecurityPolicy.None],
            securityModes: [MessageSecurityMode.None],
        });
    }
    const server = new OPCUAServer(options);
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.registerNamespace("urn:test:peer");
    const folder = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "peer", nodeId: "s=peer" });
    const num = {};
    for (const [key, value] of [["a", 1.5], ["b", 2.5], ["c", 3.5]]) {
        num[key] = ns.addVariable({
            componentOf: folder, browseName: key, nodeId: `s=peer/num/${key}`, dataType: "Double",
            value: new Variant({ dataType: DataType.Double, value }),
        });
    }
    const u16 = ns.addVariable({
        componentOf: folder, browseName: "u16", nodeId: "s=peer/num/u16", dataType: "UInt16",
        accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
        value: new Variant({ dataType: DataType.UInt16, value: 7 }),
    });
    const odd = {};
    for (const key of ["datetime", "text", "nodeid", "status"]) {
        odd[key] = ns.addVariable({
            componentOf: folder, browseName: key, nodeId: `s=peer/odd/${key}`, dataType: "BaseDataType",
            value: new Variant({ dataType: DataType.Double, value: 0.0 }),
        });
    }

    let generation = 0;
    function bump() {
        generation += 1;
        for (const [key, variable] of Object.entries(num)) {
            const base = { a: 1.5, b: 2.5, c: 3.5 }[key];
            variable.setValueFromSource(new Variant({ dataType: DataType.Double, value: base + 10 * generation }));
        }
    }
    function morph() {
        odd.datetime.setValueFromSource(new Variant({ dataType: DataType.DateTime, value: new Date() }));
        odd.text.setValueFromSource(new Variant({
            dataType: DataType.LocalizedText, value: new LocalizedText({ locale: "fr", text: "porte ouverte" }),
        }));
        odd.nodeid.setValueFromSource(new Variant({ dataType: DataType.NodeId, value: coerceNodeId("ns=1;s=elsewhere") }));
        odd.status.setValueFromSource(new Variant({ dataType: DataType.StatusCode, value: StatusCodes.BadInternalError }));
        bump();
    }

    await server.start();
    const endpoint = server.getEndpointUrl().replace(/\/\/[^:/]+:/, "//127.0.0.1:");
    const actualPort = Number(new URL(endpoint.replace("opc.tcp:", "http:")).port);
    process.stdout.write(JSON.stringify({
        url: endpoint, port: actualPort, certificate: secure ? server.certificateFile : null,
    }) + "\n");

    const commands = readline.createInterface({ input: process.stdin });
    commands.on("line", async (line) => {
        const [cmd, arg] = line.trim().split(/\s+/, 2);
        if (cmd === "trust" && secure) {
            const pem = fs.readFileSync(arg, "latin1");
            const der = pem.includes("-----BEGIN")
                ? Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64")
                : fs.readFileSync(arg);
            await options.serverCertificateManager.trustCertificate(der);
        } else if (cmd === "morph") {
            morph();
        } else if (cmd === "bump") {
            bump();
        } else if (cmd === "u16") {
            process.stdout.write(JSON.stringify({ u16: u16.readValue().value.value }) + "\n");
            return;
        } else if (cmd) {
            process.stdout.write(JSON.stringify({ error: `unknown command ${cmd}` }) + "\n");
            return;
        }
        process.stdout.write(JSON.stringify({ done: cmd, generation }) + "\n");
    });
    commands.on("close", async () => {
        await server.shutdown(0);
        process.exit(0);
    });
}

main().catch((err) => {
    process.stderr.write(`opcua_server.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
});
