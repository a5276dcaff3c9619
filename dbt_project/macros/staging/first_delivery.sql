{#-
  The processor re-sends some records: of each transaction id, the first delivery is kept (the
  earliest landing file, then the earliest event time). Shared by the staging model and the
  online store's landed events (stg_bank__transaction_events), so both keep the same copy.
  It never has to choose between different events: ingestion refuses a key reused by another
  event and a re-send whose values differ (orchestration/landing_rows.py), so the copies of a
  key it drops are exact repeats of the one it keeps.
-#}
{% macro first_delivery(id, file, at) -%}
    qualify row_number() over (partition by {{ id }} order by {{ file }}, {{ at }}) = 1
{%- endmacro %}
