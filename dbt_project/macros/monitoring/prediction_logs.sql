{#-
  Where the serving prediction logs are: var `prediction_logs_path`, else env PREDICTION_LOGS_PATH,
  else ../artifacts/prediction_logs (relative to this project). The source in
  models/staging/serving/_serving__sources.yml spells the same expression (yml cannot call macros).
-#}
{% macro prediction_logs_path() -%}
    {{- var('prediction_logs_path', none) or env_var('PREDICTION_LOGS_PATH', '../artifacts/prediction_logs') -}}
{%- endmacro %}

{#-
  True when at least one log file exists. DuckDB's read_text/read_json raise on a glob that
  matches nothing, so before the first prediction is served staging selects from an empty typed
  relation instead (see stg_serving__prediction_log_lines). False at parse time.
-#}
{% macro prediction_logs_exist() %}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {%- set found = run_query("select count(*) from glob('" ~ prediction_logs_path() ~ "/*.jsonl')") -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{% endmacro %}

{#- Population stability index term of one bin; shares are floored at 1e-4 so an empty bin
    (e.g. an unseen category) counts as a large but finite shift. -#}
{% macro psi_term(actual_share, expected_share) -%}
    (greatest({{ actual_share }}, 0.0001) - greatest({{ expected_share }}, 0.0001))
        * ln(greatest({{ actual_share }}, 0.0001) / greatest({{ expected_share }}, 0.0001))
{%- endmacro %}
