/*
 * gw_config.c - the gateway's settings (the shared ones are in libashoon).
 */
#include "gw.h"

gw_cfg gw_config;

const char *const gw_class_names[GW_CLASS_COUNT] = {
    "open", "api", "admin", "webhook"};

const ash_cfg_key gw_keys[] = {
    ASH_CFG_STR("ASHOON_HTTP_ADDR", gw_config.http_addr, "127.0.0.1:8080", 0,
        "public HTTP(S) listener, host:port"),
    ASH_CFG_STR("ASHOON_TLS_CERT", gw_config.tls_cert, "", 0,
        "PEM certificate chain; with ASHOON_TLS_KEY turns on TLS >= 1.2"),
    ASH_CFG_STR("ASHOON_TLS_KEY", gw_config.tls_key, "", 0,
        "PEM private key file for ASHOON_TLS_CERT"),
    ASH_CFG_INT("ASHOON_HTTP_TIMEOUT_S", gw_config.http_timeout_s, "30", 1,
        3600, 0, "read/write timeout of one client connection"),
    ASH_CFG_INT("ASHOON_API_MAX_BODY", gw_config.max_body[GW_CLASS_API],
        "1048576", 0, 67108864, 0, "largest /api request body, bytes"),
    ASH_CFG_INT("ASHOON_ADMIN_MAX_BODY", gw_config.max_body[GW_CLASS_ADMIN],
        "65536", 0, 67108864, 0, "largest /admin request body, bytes"),
    ASH_CFG_INT("ASHOON_WEBHOOK_MAX_BODY",
        gw_config.max_body[GW_CLASS_WEBHOOK], "1048576", 0, 67108864, 0,
        "largest webhook body, bytes"),
    ASH_CFG_INT("ASHOON_RATE_API_RPS", gw_config.rate_rps[GW_CLASS_API], "20",
        1, 1000000, 0, "API requests per second per client IP"),
    ASH_CFG_INT("ASHOON_RATE_API_BURST", gw_config.rate_burst[GW_CLASS_API],
        "40", 1, 1000000, 0, "API burst per client IP"),
    ASH_CFG_INT("ASHOON_RATE_ADMIN_RPS", gw_config.rate_rps[GW_CLASS_ADMIN],
        "5", 1, 1000000, 0, "admin requests per second per client IP"),
    ASH_CFG_INT("ASHOON_RATE_ADMIN_BURST",
        gw_config.rate_burst[GW_CLASS_ADMIN], "20", 1, 1000000, 0,
        "admin burst per client IP"),
    ASH_CFG_INT("ASHOON_RATE_WEBHOOK_RPS",
        gw_config.rate_rps[GW_CLASS_WEBHOOK], "5000", 1, 1000000, 0,
        "webhook requests per second per sender IP (providers burst from "
        "few addresses; the signature is the real guard)"),
    ASH_CFG_INT("ASHOON_RATE_WEBHOOK_BURST",
        gw_config.rate_burst[GW_CLASS_WEBHOOK], "10000", 1, 1000000, 0,
        "webhook burst per sender IP"),
    ASH_CFG_STR("ASHOON_ADMIN_TOKEN", gw_config.admin_token, "",
        ASH_CFG_SECRET, "bearer token of the admin API; empty disables it"),
    ASH_CFG_STR("ASHOON_TRUSTED_PROXIES", gw_config.trusted_proxies, "", 0,
        "CIDRs of proxies whose X-Forwarded-For is believed"),
    ASH_CFG_MS("ASHOON_READY_TIMEOUT_MS", gw_config.ready_timeout_ms, "1000",
        10, 60000, 0, "deadline of each service's health answer in /readyz"),
    ASH_CFG_MS("ASHOON_KEY_CACHE_MS", gw_config.key_cache_ms, "10000", 0,
        3600000, 0,
        "how long a verified API key is trusted without a lookup (also the "
        "longest a revoked key keeps working)"),
    ASH_CFG_END,
};
