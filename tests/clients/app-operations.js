// The app's operations, as an Apollo Client app defines them (named, one per gql tag). The
// client tests use them, and persisted.test.js builds the trusted-documents manifest from this
// file with Apollo's official tool (@apollo/generate-persisted-query-manifest), as an app's
// build would.
import { gql } from "@apollo/client/core";

export const REQUEST_CODE = gql`
  mutation RequestCode($phone: String!) {
    requestCode(phone: $phone) {
      phone
      expiresAt
      resendAvailableAt
      devCode
    }
  }
`;
export const VERIFY_CODE = gql`
  mutation VerifyCode($phone: String!, $code: String!) {
    verifyCode(phone: $phone, code: $code) {
      accessToken
      refreshToken
      tokenType
      expiresIn
      isNewUser
      user {
        id
        phone
        inviteCode
      }
    }
  }
`;
export const ME = gql`
  query Me($first: Int, $after: String) {
    me {
      id
      phone
      inviteCode
      activatedInviteCode
      invitedUsers(first: $first, after: $after) {
        totalCount
        nodes {
          id
          phone
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`;
export const ACTIVATE_INVITE = gql`
  mutation ActivateInvite($inviteCode: String!) {
    activateInvite(inviteCode: $inviteCode) {
      id
      activatedInviteCode
    }
  }
`;
export const REFRESH = gql`
  mutation Refresh($refreshToken: String!) {
    refreshToken(refreshToken: $refreshToken) {
      accessToken
      refreshToken
      expiresIn
    }
  }
`;
export const LOGOUT = gql`
  mutation Logout($refreshToken: String!) {
    logout(refreshToken: $refreshToken)
  }
`;
export const INVITED_USER_JOINED = gql`
  subscription Joined {
    invitedUserJoined {
      id
      phone
    }
  }
`;

