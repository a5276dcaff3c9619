{#-
  Row-level cleanup of one raw card transaction, exactly as it lands: rename, cast, trim, case and
  empty-string-to-null. Used by the staging model over the landing source and by the serving SQL
  over a request, so the two cannot drift apart. The label and ingestion metadata are not here:
  serving never sees them.
-#}
{% macro bank_transaction_columns() %}
    cast(txn_id as varchar) as transaction_id,
    cast(txn_ts as timestamp) as event_at,
    cast(user_id as varchar) as user_id,
    cast(merchant_id as varchar) as merchant_id,
    nullif(lower(trim(merchant_category)), '') as merchant_category,
    cast(amount as double) as amount,
    nullif(upper(trim(currency_code)), '') as currency,
    nullif(upper(trim(country_code)), '') as country,
    nullif(lower(trim(channel)), '') as channel,
    nullif(lower(trim(device_type)), '') as device
{% endmacro %}
