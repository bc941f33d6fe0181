#!/usr/bin/env bash
# Render the forward-auth proxy samples with example values and check them with the real proxies:
#   deploy/nginx/oidc-authz.conf  → nginx -t (inside a minimal main config, unprivileged prefix)
#   deploy/caddy/Caddyfile        → caddy validate --adapter caddyfile
# (deploy/envoy/*.yaml: scripts/validate-envoy.sh; deploy/traefik: e2e/test_traefik_sample.py.)
# Needs nginx (Debian nginx-light or nginx: with the auth_request module) and caddy on PATH; fails, naming
# the package, when one is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
render=(python3 "$root/e2e/render_envoy.py")

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v caddy >/dev/null || missing+=(caddy)
if ((${#missing[@]})); then
  echo "validate-proxies: missing ${missing[*]}: apt-get install ${missing[*]}" >&2
  exit 1
fi
if ! nginx -V 2>&1 | grep -q -- '--with-http_auth_request_module'; then
  echo "validate-proxies: this nginx has no auth_request module (Debian nginx-light / nginx-core have it)" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0

# nginx: the sample is an http-context include; wrap it in a main config that runs unprivileged.
mkdir -p "$tmp/nginx/tmp"
"${render[@]}" "$root/deploy/nginx/oidc-authz.conf" NGINX_LISTEN=127.0.0.1:18081 \
  OIDC_AUTHZ_HOST=127.0.0.1 OIDC_AUTHZ_HTTP_PORT=19004 UPSTREAM_HOST=127.0.0.1 UPSTREAM_PORT=18000 \
  > "$tmp/nginx/oidc-authz.conf"
cat > "$tmp/nginx/nginx.conf" <<'CONF'
daemon off;
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  include oidc-authz.conf;
}
CONF
if out="$(nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -t 2>&1)"; then
  echo "validate-proxies: deploy/nginx/oidc-authz.conf: OK ($(nginx -v 2>&1 | sed 's/^nginx version: //'), nginx -t)"
else
  echo "$out" >&2
  echo "validate-proxies: deploy/nginx/oidc-authz.conf: INVALID" >&2
  status=1
fi

# Caddy
for site in ":8080" "http://127.0.0.1:18082"; do
  "${render[@]}" "$root/deploy/caddy/Caddyfile" "CADDY_SITE=$site" OIDC_AUTHZ_HOST=oidc-authz \
    OIDC_AUTHZ_HTTP_PORT=9004 UPSTREAM_HOST=app UPSTREAM_PORT=8000 > "$tmp/Caddyfile"
  if out="$(caddy validate --config "$tmp/Caddyfile" --adapter caddyfile 2>&1)"; then
    echo "validate-proxies: deploy/caddy/Caddyfile (site $site): OK ($(caddy version | cut -d' ' -f1), caddy validate)"
  else
    echo "$out" >&2
    echo "validate-proxies: deploy/caddy/Caddyfile (site $site): INVALID" >&2
    status=1
  fi
done
exit "$status"
