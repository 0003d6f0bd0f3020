// The README's example operations as a codegen pipeline sees them: operations.graphql must hold
// exactly the walk-through's operations (README, then docs/walkthrough.md) followed by those of docs/app-features.md, @graphql-codegen (typescript + typescript-operations)
// must type them from schema.graphql, and `tsc --strict` must accept typed-operations.ts, which
// uses those types. (No server needed: the schema file is the contract; a Rust test keeps the
// running server's SDL equal to it.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, print } from "graphql";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");

/** The ```graphql blocks of the walk-through, in order: the README's section (its first steps),
 * then docs/walkthrough.md (the rest). */
function walkthroughOperations() {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const start = readme.indexOf("## A walk-through");
  assert.ok(start >= 0, "README.md has a walk-through section");
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const continued = readFileSync(join(root, "docs", "walkthrough.md"), "utf8");
  const first = graphqlBlocks(section);
  const rest = graphqlBlocks(continued);
  assert.ok(first.length > 0, "the README's walk-through has GraphQL examples");
  assert.ok(rest.length > 0, "docs/walkthrough.md has GraphQL examples");
  return [...first, ...rest].flatMap((block) => parse(block).definitions.map((d) => print(d)));
}

/** Every ```graphql block of `markdown`, in order. */
function graphqlBlocks(markdown) {
  return [...markdown.matchAll(/^```graphql\n([\s\S]*?)^```/gm)].map((m) => m[1]);
}

/** The ```graphql blocks of docs/app-features.md (named operations), in order. */
function appFeaturesOperations() {
  const doc = readFileSync(join(root, "docs", "app-features.md"), "utf8");
  const blocks = graphqlBlocks(doc);
  assert.ok(blocks.length > 0, "docs/app-features.md has GraphQL examples");
  return blocks.flatMap((block) => parse(block).definitions.map((d) => print(d)));
}

function run(command, args) {
  const result = spawnSync(join(here, "node_modules", ".bin", command), args, {
    cwd: here,
    encoding: "utf8",
  });
  assert.equal(result.status, 0, `${command} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

test("operations.graphql holds the README walk-through's and docs/app-features.md's operations", () => {
  const file = readFileSync(join(here, "operations.graphql"), "utf8");
  const operations = parse(file).definitions.map((d) => print(d));
  // Compared as printed ASTs: comments and layout may differ, the operations may not.
  assert.deepEqual(operations, [...walkthroughOperations(), ...appFeaturesOperations()]);
});

test("codegen types the README's operations and tsc --strict accepts code using them", () => {
  rmSync(join(here, "generated"), { recursive: true, force: true });
  run("graphql-codegen", ["--config", "codegen.ts", "--silent"]);
  const generated = readFileSync(join(here, "generated", "graphql.ts"), "utf8");
  for (const type of [
    "Unnamed_1_Mutation",
    "Unnamed_3_Query",
    "Unnamed_9_Query",
    "RequestPhoneChangeMutation",
    "ConfirmPhoneChangeMutation",
    "DeleteAccountMutation",
  ]) {
    assert.match(generated, new RegExp(`export type ${type} =`));
  }
  run("tsc", ["--strict", "--noEmit", "-p", "tsconfig.json"]);
});
