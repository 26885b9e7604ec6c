/** Typed messages: encoding, and validation of everything the server sends. */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ProtocolError,
  encodeClientMessage,
  parseServerFrame,
  parseServerMessage,
} from "../src/index.js";

const parse = (m: unknown) => parseServerMessage(JSON.stringify(m));

test("client messages are plain JSON of the typed objects", () => {
  assert.equal(
    encodeClientMessage({
      type: "join",
      client: null,
      rev: null,
      user: { name: "Ada", color: "#c33" },
    }),
    '{"type":"join","client":null,"rev":null,"user":{"name":"Ada","color":"#c33"}}',
  );
  assert.equal(
    encodeClientMessage({ type: "op", rev: 41, seq: 7, op: [5, "😀", -3, 2] }),
    '{"type":"op","rev":41,"seq":7,"op":[5,"😀",-3,2]}',
  );
  assert.equal(
    encodeClientMessage({ type: "presence", rev: 3, selection: null }),
    '{"type":"presence","rev":3,"selection":null}',
  );
});

test("joined with text and with ops", () => {
  const a = parse({
    type: "joined",
    client: "c1",
    rev: 4,
    language: "rust",
    permission: "write",
    peers: [],
    text: "hi",
  });
  assert.ok(a?.type === "joined" && a.text === "hi" && a.ops === undefined && a.rev === 4);
  const b = parse({
    type: "joined",
    client: "c1",
    rev: 5,
    language: null,
    permission: "read",
    peers: [
      {
        client: "c2",
        user: { id: "u2", name: "Bo", color: "#00f" },
        selection: { ranges: [{ anchor: 1, head: 2 }] },
      },
    ],
    ops: [{ rev: 5, client: "c2", op: [2, "x"] }],
  });
  assert.ok(b?.type === "joined" && b.ops);
  assert.deepEqual(b.ops[0]?.op.toJSON(), [2, "x"]);
  assert.deepEqual(b.peers[0]?.user, { id: "u2", name: "Bo", color: "#00f" });
});

test("every server message type parses", () => {
  assert.deepEqual(parse({ type: "ack", seq: 7, rev: 42 }), { type: "ack", seq: 7, rev: 42 });
  const op = parse({ type: "op", rev: 43, client: "c2", op: [1, -1] });
  assert.ok(op?.type === "op" && op.op.baseLength === 2);
  assert.deepEqual(parse({ type: "presence", client: "c2", user: null, selection: null }), {
    type: "presence",
    client: "c2",
    user: null,
    selection: null,
  });
  assert.deepEqual(parse({ type: "peer", client: "c3", user: { name: "Cy", color: "#0f0" } }), {
    type: "peer",
    client: "c3",
    user: { id: null, name: "Cy", color: "#0f0" },
  });
  assert.deepEqual(parse({ type: "leave", client: "c3" }), { type: "leave", client: "c3" });
  assert.deepEqual(parse({ type: "language", language: "go", client: "c2" }), {
    type: "language",
    language: "go",
    client: "c2",
  });
  assert.deepEqual(parse({ type: "error", code: "unknown_rev", message: "too old", seq: 8 }), {
    type: "error",
    code: "unknown_rev",
    message: "too old",
    seq: 8,
  });
  assert.deepEqual(parse({ type: "error", code: "forbidden", message: "no" }), {
    type: "error",
    code: "forbidden",
    message: "no",
    seq: null,
  });
});

test("unknown types are ignored, not fatal", () => {
  assert.equal(parse({ type: "future_feature", x: 1 }), null);
});

const bad: [string, unknown][] = [
  ["not an object", [1, 2]],
  ["no type", { rev: 1 }],
  ["ack with float seq", { type: "ack", seq: 1.5, rev: 2 }],
  ["ack with seq 0", { type: "ack", seq: 0, rev: 2 }],
  ["ack with negative rev", { type: "ack", seq: 1, rev: -1 }],
  ["ack with string rev", { type: "ack", seq: 1, rev: "2" }],
  ["op with a bad op", { type: "op", rev: 1, client: "c", op: [0] }],
  ["op with a float in op", { type: "op", rev: 1, client: "c", op: [1.5] }],
  ["op with a lone surrogate", { type: "op", rev: 1, client: "c", op: ["\ud800"] }],
  ["op without client", { type: "op", rev: 1, op: [1] }],
  [
    "joined with both text and ops",
    {
      type: "joined",
      client: "c",
      rev: 0,
      language: null,
      permission: "write",
      peers: [],
      text: "",
      ops: [],
    },
  ],
  [
    "joined with neither",
    { type: "joined", client: "c", rev: 0, language: null, permission: "write", peers: [] },
  ],
  [
    "joined with unknown permission",
    {
      type: "joined",
      client: "c",
      rev: 0,
      language: null,
      permission: "root",
      peers: [],
      text: "",
    },
  ],
  [
    "joined with bad peers",
    {
      type: "joined",
      client: "c",
      rev: 0,
      language: null,
      permission: "read",
      peers: {},
      text: "",
    },
  ],
  [
    "presence with a bad selection",
    { type: "presence", client: "c", user: null, selection: { ranges: [{ anchor: -1, head: 0 }] } },
  ],
  ["error with an unknown code", { type: "error", code: "oops", message: "" }],
];
for (const [name, message] of bad) {
  test(`rejected: ${name}`, () => {
    assert.throws(() => parse(message), ProtocolError);
  });
}

test("rejected: not JSON", () => {
  assert.throws(() => parseServerMessage("{"), ProtocolError);
  assert.throws(() => parseServerMessage(""), ProtocolError);
});

test("a batched frame is an array of messages; a single frame is one", () => {
  const ack = { type: "ack", seq: 1, rev: 2 };
  const op = { type: "op", rev: 3, client: "c2", op: [2, "x"] };
  const batch = parseServerFrame(JSON.stringify([ack, { type: "future" }, op]));
  assert.deepEqual(
    batch.map((m) => m?.type ?? null),
    ["ack", null, "op"],
  );
  assert.deepEqual(
    parseServerFrame(JSON.stringify(ack)).map((m) => m?.type),
    ["ack"],
  );
  assert.throws(() => parseServerFrame("[]"), ProtocolError);
  assert.throws(() => parseServerFrame(JSON.stringify([ack, 5])), ProtocolError);
  assert.throws(
    () => parseServerFrame(JSON.stringify([ack, { type: "ack", seq: 1 }])),
    ProtocolError,
  );
  // One message per frame stays the rule for parseServerMessage.
  assert.throws(() => parseServerMessage(JSON.stringify([ack])), ProtocolError);
});
