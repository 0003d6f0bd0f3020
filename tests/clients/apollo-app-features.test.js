// The phone change and account deletion through Apollo Client, as an app runs them after
// sign-in: requestPhoneChange -> confirmPhoneChange (a bad phone, a free number; then another
// user's number: a wrong code counts down, and only the right one answers PHONE_TAKEN); then
// deleteAccount -> the deleted user's tokens are dead and their invitee keeps
// activatedInviteCode.
//
// Codes sent: four (two sign-ins, two change requests), which keeps the whole client suite under
// the default per-IP limit (IP_CODES_PER_HOUR=10). The taken number just got its sign-in code,
// so the test waits out its resend cooldown (OTP_RESEND_COOLDOWN_SECONDS, 60 s) before asking
// for it. REAUTHENTICATION_REQUIRED needs a clock that moves five minutes: the Rust tests
// (tests/api/account_deletion.rs) cover it with ManualClock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { gql } from "@apollo/client/core";

import { apolloClient, graphqlError } from "./apollo-support.js";
import { ACTIVATE_INVITE, ME, REFRESH, REQUEST_CODE, VERIFY_CODE } from "./app-operations.js";
import { freshPhone } from "./support.js";

const REQUEST_PHONE_CHANGE = gql`
  mutation RequestPhoneChange($phone: String!) {
    requestPhoneChange(phone: $phone) {
      phone
      expiresAt
      resendAvailableAt
      devCode
    }
  }
`;
const CONFIRM_PHONE_CHANGE = gql`
  mutation ConfirmPhoneChange($phone: String!, $code: String!) {
    confirmPhoneChange(phone: $phone, code: $code) {
      id
      phone
      inviteCode
    }
  }
`;
const DELETE_ACCOUNT = gql`
  mutation DeleteAccount {
    deleteAccount
  }
`;

function client(accessToken) {
  return apolloClient({ accessToken });
}

async function signIn(phone) {
  const anonymous = client();
  const { data: requested } = await anonymous.mutate({
    mutation: REQUEST_CODE,
    variables: { phone },
  });
  const { data } = await anonymous.mutate({
    mutation: VERIFY_CODE,
    variables: { phone, code: requested.requestCode.devCode },
  });
  return { ...data.verifyCode, resendAvailableAt: requested.requestCode.resendAvailableAt };
}

/** A 4–8 digit code that is certainly not `code`. */
function wrong(code) {
  return [...code].map((d) => String((Number(d) + 1) % 10)).join("");
}

test("phone change and account deletion through Apollo Client", { timeout: 150_000 }, async () => {
  const bob = await signIn(freshPhone());
  const alice = await signIn(freshPhone());
  const alicePhone = alice.user.phone;
  const aliceApp = client(alice.accessToken);

  // Bob invites Alice.
  await aliceApp.mutate({
    mutation: ACTIVATE_INVITE,
    variables: { inviteCode: bob.user.inviteCode },
  });

  const bad = await graphqlError(
    aliceApp.mutate({ mutation: REQUEST_PHONE_CHANGE, variables: { phone: "not a phone" } }),
  );
  assert.deepEqual(bad.extensions, { code: "BAD_USER_INPUT", field: "phone" });

  // A free number: Alice moves; her id and invite code stay.
  const newPhone = freshPhone();
  const { data: requested } = await aliceApp.mutate({
    mutation: REQUEST_PHONE_CHANGE,
    variables: { phone: newPhone },
  });
  assert.equal(requested.requestPhoneChange.phone, newPhone);
  const { data: moved } = await aliceApp.mutate({
    mutation: CONFIRM_PHONE_CHANGE,
    variables: { phone: newPhone, code: requested.requestPhoneChange.devCode },
  });
  assert.deepEqual(moved.confirmPhoneChange, {
    __typename: "User",
    id: alice.user.id,
    phone: newPhone,
    inviteCode: alice.user.inviteCode,
  });
  assert.notEqual(newPhone, alicePhone);
  const { data: me } = await aliceApp.query({ query: ME });
  assert.equal(me.me.phone, newPhone);

  // Bob's number, once its cooldown is over: a code is sent (nothing tells Alice it is taken),
  // a wrong code counts down, and only the right code reveals PHONE_TAKEN.
  const wait = Date.parse(bob.resendAvailableAt) - Date.now() + 500;
  await new Promise((resolve) => setTimeout(resolve, Math.max(wait, 0)));
  const { data: toBob } = await aliceApp.mutate({
    mutation: REQUEST_PHONE_CHANGE,
    variables: { phone: bob.user.phone },
  });
  assert.equal(toBob.requestPhoneChange.phone, bob.user.phone);
  const bobCode = toBob.requestPhoneChange.devCode;
  assert.match(bobCode, /^\d{4,8}$/);
  const guess = await graphqlError(
    aliceApp.mutate({
      mutation: CONFIRM_PHONE_CHANGE,
      variables: { phone: bob.user.phone, code: wrong(bobCode) },
    }),
  );
  assert.equal(guess.extensions.code, "INVALID_CODE");
  assert.equal(guess.extensions.attemptsLeft, 4);
  const taken = await graphqlError(
    aliceApp.mutate({
      mutation: CONFIRM_PHONE_CHANGE,
      variables: { phone: bob.user.phone, code: bobCode },
    }),
  );
  assert.deepEqual(taken.extensions, { code: "PHONE_TAKEN" });
  assert.equal((await aliceApp.query({ query: ME })).data.me.phone, newPhone);

  // Bob deletes his account (his sign-in is about a minute old, under REAUTH_MAX_AGE_SECONDS).
  const bobApp = client(bob.accessToken);
  const { data: deleted } = await bobApp.mutate({ mutation: DELETE_ACCOUNT });
  assert.equal(deleted.deleteAccount, true);
  assert.equal(
    (await graphqlError(bobApp.query({ query: ME }))).extensions.code,
    "UNAUTHENTICATED",
  );
  assert.equal(
    (
      await graphqlError(
        client().mutate({ mutation: REFRESH, variables: { refreshToken: bob.refreshToken } }),
      )
    ).extensions.code,
    "UNAUTHENTICATED",
  );
  // Alice keeps the code she activated.
  const { data: after } = await aliceApp.query({ query: ME });
  assert.equal(after.me.activatedInviteCode, bob.user.inviteCode);
});
