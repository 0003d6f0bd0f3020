// Starts GraphiQL on the page that src/http/graphiql.rs serves with the bundles embedded in the
// server. It is a file, not an inline script, so the page's Content-Security-Policy can forbid
// inline scripts; the endpoints come from data attributes on the root element.
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var url = new URL(root.dataset.endpoint, window.location.href);
  var subscriptionUrl = new URL(root.dataset.subscriptionEndpoint, window.location.href);
  subscriptionUrl.protocol = subscriptionUrl.protocol === "https:" ? "wss:" : "ws:";
  var fetcher = GraphiQL.createFetcher({
    url: url.toString(),
    subscriptionUrl: subscriptionUrl.toString(),
  });
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
    }),
  );
})();
