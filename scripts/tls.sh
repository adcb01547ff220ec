#!/usr/bin/env bash
# A throwaway CA and a server certificate for loopback, made with openssl (nothing downloaded):
#
#   scripts/tls.sh DIR [PASSWORD]
#
# writes DIR/ca.pem (what clients trust: kafka.ssl_cafile, ssl_ca_certs= in a rediss:// URL),
# DIR/server.pem + DIR/server.key (Redis's tls-cert-file and tls-key-file) and DIR/server.p12
# (the broker's PKCS12 keystore, protected by PASSWORD, default DIR/keystore.password made
# here). The certificate names localhost and 127.0.0.1, so clients check the host as usual.
# Existing files are kept: a restarted stack keeps the CA its clients trust. Used by
# scripts/stack.sh start --secure and tests/integration/servers.py.
set -euo pipefail

DIR="${1:?usage: scripts/tls.sh DIR [PASSWORD]}"
DAYS="${TLS_DAYS:-365}"
mkdir -p "$DIR"
chmod 700 "$DIR"
cd "$DIR"
umask 077

if [[ -n "${2:-}" ]]; then
    printf '%s' "$2" >keystore.password
elif [[ ! -s keystore.password ]]; then
    openssl rand -hex 16 | tr -d '\n' >keystore.password
fi

if [[ ! -s ca.pem || ! -s ca.key ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days "$DAYS" \
        -subj "/CN=segstream local CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    rm -f server.pem server.key server.p12
fi
if [[ ! -s server.pem || ! -s server.key ]]; then
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days "$DAYS" -extfile server.ext 2>/dev/null
    rm -f server.csr server.ext server.p12
fi
if [[ ! -s server.p12 ]]; then
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name server \
        -out server.p12 -passout "file:keystore.password"
fi
# Readable by the owner only, except what clients need to trust the server.
chmod 600 ca.key server.key server.p12 keystore.password
chmod 644 ca.pem server.pem
