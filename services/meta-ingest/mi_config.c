/*
 * mi_config.c - meta-ingest's settings (the shared ones are in libashoon).
 */
#include "mi.h"

mi_cfg mi_config;

const ash_cfg_key mi_keys[] = {
    ASH_CFG_STR("META_APP_SECRET", mi_config.app_secret, "", ASH_CFG_SECRET,
        "the Meta app's secret: webhook signatures are checked with it; "
        "empty: every webhook POST is refused"),
    ASH_CFG_STR("META_VERIFY_TOKEN", mi_config.verify_token, "",
        ASH_CFG_SECRET,
        "the Verify Token typed into the app dashboard; empty: the "
        "handshake is refused"),
    ASH_CFG_STR("META_APP_ID", mi_config.app_id, "", 0,
        "our Meta app id: echoes carrying it (and our metadata) are our "
        "own sends"),
    ASH_CFG_STR("META_GRAPH_URL", mi_config.graph_url,
        "https://graph.facebook.com", 0, "Graph API base URL"),
    ASH_CFG_STR("META_IG_GRAPH_URL", mi_config.ig_graph_url,
        "https://graph.instagram.com", 0,
        "Graph API base URL for channels connected with Instagram Login"),
    ASH_CFG_STR("META_GRAPH_VERSION", mi_config.graph_version, "v23.0", 0,
        "Graph API version sent on every call"),
    ASH_CFG_STR("ASHOON_MASTER_KEY", mi_config.master_key, NULL,
        ASH_CFG_REQUIRED | ASH_CFG_SECRET,
        "AES-256-GCM master keys sealing page tokens: base64 (version 1), "
        "or N:base64,M:base64 (the highest encrypts, all decrypt)"),
    ASH_CFG_MS("ASHOON_META_GRAPH_TIMEOUT_MS", mi_config.graph_timeout_ms,
        "10000", 100, 120000, 0, "deadline of one Graph API call"),
    ASH_CFG_INT("ASHOON_META_SEND_MAX_ATTEMPTS", mi_config.send_max_attempts,
        "6", 1, 50, 0, "tries of one outbound message before it fails"),
    ASH_CFG_INT("ASHOON_META_JOURNAL_DAYS", mi_config.journal_days, "90", 1,
        3650, 0, "how long webhook journal rows are kept"),
    ASH_CFG_INT("ASHOON_META_BATCH_MAX", mi_config.batch_max, "256", 1, 10000,
        0, "webhook POSTs committed together at most"),
    ASH_CFG_INT("ASHOON_META_BATCH_INFLIGHT", mi_config.batch_inflight, "3", 1,
        16, 0,
        "webhook batches being committed at once at most, each on its own "
        "database connection: more than one only beside a slow or stuck "
        "one (ASHOON_META_BATCH_STAGGER_MS), where each lane can then have "
        "its own"),
    ASH_CFG_INT("ASHOON_META_BATCH_LANES", mi_config.batch_lanes, "2", 1, 16,
        0,
        "queues of webhook POSTs, by conversation: beside a slow or stuck "
        "commit each lane's POSTs go in a batch of their own, which "
        "seldom waits for the same rows"),
    ASH_CFG_INT("ASHOON_META_BATCH_OVERLAP", mi_config.batch_overlap, "64", 1,
        10000, 0,
        "a webhook batch starts beside one holding POSTs of its lane only "
        "while fewer POSTs than this wait in the lane; more wait for it "
        "and go together"),
    ASH_CFG_MS("ASHOON_META_BATCH_STAGGER_MS", mi_config.batch_stagger_ms,
        "20", 0, 60000, 0,
        "a webhook batch starts beside one being committed only once that "
        "one has run this long: until then POSTs wait and go together in "
        "the next, one commit at a time being cheaper for Postgres; a "
        "slow or stuck commit gets company (0: at once)"),
    ASH_CFG_MS("ASHOON_META_SENDER_POLL_MS", mi_config.sender_poll_ms, "1000",
        10, 60000, 0,
        "how often the sender looks for due outbound messages (it is also "
        "woken at once by new ones)"),
    ASH_CFG_STR("ASHOON_META_MEDIA_HOSTS", mi_config.media_hosts,
        "fbcdn.net,fbsbx.com,cdninstagram.com", 0,
        "domains (comma-separated; their subdomains too) whose attachment "
        "URLs get a HEAD to read their sizes: Meta's CDNs. A customer's "
        "link to any other site is never fetched; its size stays unknown"),
    ASH_CFG_BOOL("ASHOON_META_MEDIA_ALLOW_PRIVATE",
        mi_config.media_allow_private, "0", 0,
        "let attachment URLs (from webhooks) reach private and loopback "
        "addresses when their sizes are read: tests and on-prem mirrors "
        "only"),
    ASH_CFG_END,
};
