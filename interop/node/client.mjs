#!/usr/bin/env node
// A voicecall client built from proto/voicecall/v1/voicecall_service.proto alone (no generated
// code, no Python): it places a call, tails that call's events until the call ends or N events
// have arrived, ends it, and prints one JSON object per line on stdout.
//
//   npm install --prefix interop/node
//   node interop/node/client.mjs 127.0.0.1:50051 [--to +15551230001] [--message "Hello"]
//        [--mode notify|conversation] [--max-events 50] [--timeout-ms 20000]
//
// Field names: the proto is loaded with keepCase: false, so messages use lowerCamelCase names
// (toNumber, callId, afterSequence), the same names as the proto3 JSON mapping and grpcurl.
// Enums are strings (CALL_STATE_RINGING), int64 values (sequence) are decimal strings.
// A bearer token for grpc.authToken comes from the VOICECALL_TOKEN environment variable.
// Exit status: 0 on success, 1 on an RPC error, 2 on bad usage or the overall timeout.

import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoRoot = path.resolve(here, "..", "..", "proto");

const TERMINAL = new Set([
  "CALL_STATE_COMPLETED",
  "CALL_STATE_HANGUP_USER",
  "CALL_STATE_HANGUP_BOT",
  "CALL_STATE_TIMEOUT",
  "CALL_STATE_ERROR",
  "CALL_STATE_FAILED",
  "CALL_STATE_NO_ANSWER",
  "CALL_STATE_BUSY",
  "CALL_STATE_VOICEMAIL",
]);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node client.mjs HOST:PORT [--to E164] [--message TEXT] ` +
      "[--mode notify|conversation] [--max-events N] [--timeout-ms MS]\n",
  );
  process.exit(2);
}

function parse() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        to: { type: "string", default: "+15551230001" },
        message: { type: "string", default: "Hello from the Node interop client" },
        mode: { type: "string", default: "conversation" },
        "max-events": { type: "string", default: "50" },
        "timeout-ms": { type: "string", default: "20000" },
      },
    });
  } catch (err) {
    usage(err.message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) usage("expected exactly one address");
  const modes = { notify: "CALL_MODE_NOTIFY", conversation: "CALL_MODE_CONVERSATION" };
  if (!(values.mode in modes)) usage(`--mode must be notify or conversation, got ${values.mode}`);
  const maxEvents = Number.parseInt(values["max-events"], 10);
  const timeoutMs = Number.parseInt(values["timeout-ms"], 10);
  if (!(maxEvents > 0) || !(timeoutMs > 0)) usage("--max-events and --timeout-ms must be positive integers");
  return { address: positionals[0], to: values.to, message: values.message, mode: modes[values.mode], maxEvents, timeoutMs };
}

function loadService() {
  const definition = protoLoader.loadSync("voicecall/v1/voicecall_service.proto", {
    includeDirs: [protoRoot],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).voicecall.v1.VoiceCallService;
}

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 10_000 }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

function describe(event) {
  const out = { type: "event", sequence: event.sequence, callId: event.callId, kind: event.kind };
  const body = event[event.kind] ?? {};
  if (event.kind === "stateChanged") {
    out.state = body.state;
    if (body.endReason) out.endReason = body.endReason;
  } else if (event.kind === "callerSpeech") {
    out.transcript = body.transcript;
    out.isFinal = Boolean(body.isFinal);
  } else if (event.kind === "botSpeech") {
    out.text = body.text;
  } else if (event.kind === "dtmf") {
    out.digits = body.digits;
  } else if (event.kind === "error") {
    out.message = body.message;
  }
  return out;
}

// Resolves once the call has ended or maxEvents events have been printed.
function tailUntilDone(client, callId, maxEvents, metadata) {
  return new Promise((resolve, reject) => {
    const stream = client.Tail({ callId, afterSequence: "0" }, metadata);
    let count = 0;
    let done = false;
    const finish = (why) => {
      if (done) return;
      done = true;
      stream.cancel();
      resolve({ events: count, why });
    };
    stream.on("data", (response) => {
      if (done) return;
      const event = describe(response.event);
      emit(event);
      count += 1;
      if (event.kind === "stateChanged" && TERMINAL.has(event.state)) finish("ended");
      else if (count >= maxEvents) finish("max-events");
    });
    stream.on("error", (err) => {
      if (!done || err.code !== grpc.status.CANCELLED) {
        done = true;
        reject(err);
      }
    });
    stream.on("end", () => finish("stream-closed"));
  });
}

async function main() {
  const args = parse();
  const VoiceCallService = loadService();
  const client = new VoiceCallService(args.address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (process.env.VOICECALL_TOKEN) metadata.set("authorization", `Bearer ${process.env.VOICECALL_TOKEN}`);
  const timer = setTimeout(() => {
    emit({ type: "error", code: "TIMEOUT", details: `no result within ${args.timeoutMs} ms` });
    process.exit(2);
  }, args.timeoutMs);
  try {
    const placed = await unary(
      client,
      "Initiate",
      { toNumber: args.to, message: args.message, mode: args.mode, requestId: `node-${process.pid}-${Date.now()}` },
      metadata,
    );
    emit({ type: "initiated", callId: placed.callId, state: placed.call.state, provider: placed.call.provider });
    const tail = await tailUntilDone(client, placed.callId, args.maxEvents, metadata);
    emit({ type: "tail-done", events: tail.events, why: tail.why });
    const ended = await unary(client, "End", { callId: placed.callId }, metadata);
    emit({ type: "ended", callId: ended.call.callId, state: ended.call.state, endReason: ended.call.endReason });
    return 0;
  } catch (err) {
    const code = typeof err.code === "number" ? grpc.status[err.code] ?? String(err.code) : "UNKNOWN";
    emit({ type: "error", code, details: err.details ?? String(err.message ?? err) });
    return 1;
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

process.exitCode = await main();
