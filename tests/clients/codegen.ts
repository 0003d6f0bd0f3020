import type { CodegenConfig } from "@graphql-codegen/cli";

// Types for the README's operations, generated from the repository's SDL (not from a running
// server: the file is the contract the test checks against).
const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["operations.graphql"],
  // The README writes its examples as anonymous operations (what one types in GraphiQL), several
  // to a file here; each is still validated against the schema, only this one rule is off.
  // Their types are named Unnamed_<n>_<Kind> in document order.
  config: { skipDocumentsValidation: { ignoreRules: ["LoneAnonymousOperationRule"] } },
  generates: {
    "generated/graphql.ts": {
      plugins: ["typescript", "typescript-operations"],
      config: {
        scalars: { DateTime: "string" },
        enumsAsTypes: true,
      },
    },
  },
};

export default config;
