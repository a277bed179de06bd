-- Engagement (Plausible's time-on-page reports, stored as events named by
-- gatrix/pageviews.py's ENGAGEMENT_NAME) counts neither as a page view nor as a custom event:
-- the rollups count custom events with ${is_custom} instead of "not a page view". Such an
-- event still sets the session's last_at, so a visit lasts until the visitor's last
-- engagement. A materialized view's query cannot be altered without an experimental
-- setting, so each is dropped and created again (rows inserted between the two statements
-- would miss the rollups; migrations run before the server accepts events).
DROP VIEW IF EXISTS $db.sessions_mv;
DROP VIEW IF EXISTS $db.hourly_mv;
DROP VIEW IF EXISTS $db.event_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.sessions_mv TO $db.sessions AS
SELECT
    project_id,
    session_start,
    session_id,
    max(device_id) AS device_id,
    max(profile_id) AS profile_id,
    min(created_at) AS first_at,
    max(created_at) AS last_at,
    countIf(${is_pageview}) AS pageviews,
    countIf(${is_custom}) AS custom_events,
    argMinState(path, if(${is_pageview}, created_at,
                         toDateTime64('2299-12-31 00:00:00', 3, 'UTC'))) AS entry_path,
    argMaxState(path, if(${is_pageview}, created_at,
                         toDateTime64('1970-01-01 00:00:00', 3, 'UTC'))) AS exit_path,
    max(referrer) AS referrer,
    max(referrer_name) AS referrer_name,
    max(referrer_type) AS referrer_type,
    max(utm_source) AS utm_source,
    max(utm_medium) AS utm_medium,
    max(utm_campaign) AS utm_campaign,
    max(utm_term) AS utm_term,
    max(utm_content) AS utm_content,
    max(country) AS country,
    max(region) AS region,
    max(city) AS city,
    max(browser) AS browser,
    max(browser_version) AS browser_version,
    max(os) AS os,
    max(os_version) AS os_version,
    max(device) AS device
FROM $db.events
GROUP BY project_id, session_start, session_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.hourly_mv TO $db.hourly AS
SELECT
    project_id,
    toStartOfHour(created_at) AS hour,
    uniqState(device_id) AS visitors,
    countIf(${is_pageview}) AS pageviews,
    countIf(${is_custom}) AS custom_events
FROM $db.events
GROUP BY project_id, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.event_hourly_mv TO $db.event_hourly AS
SELECT
    project_id,
    toStartOfHour(created_at) AS hour,
    name,
    uniqState(device_id) AS visitors,
    count() AS events
FROM $db.events
WHERE ${is_custom}
GROUP BY project_id, hour, name;
