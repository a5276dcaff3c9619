{#- Every record of every non-empty line of every prediction log file (a line is one request:
    its records and their predictions), parsed; a line or record that is not a complete
    prediction is kept and flagged (malformed_reason), never dropped. The record stays as it was
    received (JSON); its fields are checked against the source's declared types, and its event
    key and time (the source's meta.landing) are typed beside it. -#}
{%- set fields = ml_request_fields() -%}
{%- set event_key = ml_landing('event_key') -%}
{%- set event_time = ml_landing('event_time') -%}
{%- set logs = source('serving', 'prediction_logs') -%}

with

{% if prediction_logs_exist() %}
files as (
    select
        parse_filename(filename) as log_file,
        string_split(content, chr(10)) as lines
    from {{ logs }}
),

numbered as (
    select
        log_file,
        cast(generate_subscripts(lines, 1) as bigint) as line_number,
        unnest(lines) as line
    from files
),
{% else %}
-- No log file yet (nothing served): an empty relation of the same shape.
numbered as (
    select cast(null as varchar) as log_file, cast(null as bigint) as line_number, cast(null as varchar) as line
    where false
),
{% endif %}

lines as (
    select
        log_file,
        line_number,
        case when json_valid(line) then cast(line as json) end as doc
    from numbered
    where trim(line) <> ''
),

requests as (
    select
        log_file,
        line_number,
        doc is not null as is_json,
        doc->>'request_id' as request_id,
        try_cast(replace(doc->>'logged_at', 'Z', '') as timestamp) as logged_at,
        doc->>'model_id' as model_id,
        -- Servers before the request lines wrote one line per record (its record_index, inputs,
        -- score and label at the top level); such a line reads as a request of one record.
        json_type(doc->'records') is null and json_type(doc->'inputs') = 'OBJECT' as is_record_line,
        coalesce(json_type(doc->'records') = 'ARRAY', false) or is_record_line as has_records,
        coalesce(json_type(doc->'predictions') = 'ARRAY', false) or is_record_line as has_predictions,
        case
            when is_record_line then [doc->'inputs']
            when has_records then json_extract(doc, '$.records[*]')
            else []::json[]
        end as records,
        case
            when is_record_line then [json_object('score', doc->'score', 'label', doc->'label')]
            when has_predictions then json_extract(doc, '$.predictions[*]')
            else []::json[]
        end as predictions,
        -- Each record's timestamps as the server read them, canonical UTC (serving/timestamps.py);
        -- absent in logs of earlier servers, whose strings utc_timestamp parses by the same grammar.
        case when json_type(doc->'timestamps_utc') = 'ARRAY' then json_extract(doc, '$.timestamps_utc[*]') end
            as timestamps_utc,
        case when is_record_line then try_cast(doc->>'record_index' as bigint) end as line_record_index,
        -- The feature vector each prediction used (model order); absent in logs of earlier servers.
        case when json_type(doc->'features') = 'ARRAY' then json_extract(doc, '$.features[*]') end as features
    from lines
),

-- One row per logged record, its prediction beside it (unnests in one select run in step; the
-- shorter list is padded with nulls). A line without records still gives one row, to be flagged.
logged_records as (
    select
        requests.* exclude (records, predictions, line_record_index, features, timestamps_utc),
        len(records) as count_records,
        len(predictions) as count_predictions,
        unnest(range(greatest(len(records), len(predictions), 1))) as position,
        case when is_record_line then line_record_index else position end as record_index,
        unnest(records) as record,
        unnest(predictions) as prediction,
        unnest(coalesce(features, []::json[])) as feature_row,
        unnest(coalesce(timestamps_utc, []::json[])) as record_utc
    from requests
),

parsed as (
    select
        log_file,
        line_number,
        is_json,
        request_id,
        record_index,
        logged_at,
        model_id,
        is_record_line,
        has_records,
        has_predictions,
        count_records,
        count_predictions,
        coalesce(json_type(record) = 'OBJECT', false) as has_inputs,
        -- binary answers carry score, regression prediction, multiclass probabilities (score: the top one)
        coalesce(
            try_cast(prediction->>'score' as double),
            try_cast(prediction->>'prediction' as double),
            list_max(try_cast(json_extract(prediction, '$.probabilities.*') as double[]))
        ) as score,
        prediction->>'label' as label,
        try_cast(feature_row as double[]) as served_features,
        case when json_type(record) = 'OBJECT' then record end as record,
        case when json_type(record_utc) = 'OBJECT' then record_utc end as record_utc,
        {%- if event_key %}
        record->>'{{ event_key | replace("'", "''") }}' as event_key,
        {%- else %}
        cast(null as varchar) as event_key,
        {%- endif %}
        {%- if event_time %}
        {%- set key = event_time | replace("'", "''") %}
        {{ utc_timestamp("coalesce(record_utc->>'" ~ key ~ "', record->>'" ~ key ~ "')") }} as event_at,
        {%- else %}
        cast(null as timestamp) as event_at,
        {%- endif %}
        -- the first field whose value is not of its declared type (timestamps: the server's grammar)
        case
            when false then null
            {%- for name, type in fields.items() %}
            {%- set key = name | replace("'", "''") %}
            {%- if type.startswith('timestamp') %}
            when record->>'{{ key }}' is not null
                and {{ utc_timestamp("coalesce(record_utc->>'" ~ key ~ "', record->>'" ~ key ~ "')") }} is null
            {%- else %}
            when record->>'{{ key }}' is not null and try_cast(record->>'{{ key }}' as {{ type }}) is null
            {%- endif %}
                then 'records[' || record_index || '].{{ key }} is not a {{ type }}'
            {%- endfor %}
        end as field_error
    from logged_records
),

final as (
    select
        log_file,
        line_number,
        case
            when not is_json then 'not valid JSON'
            when request_id is null then 'request_id missing'
            when logged_at is null then 'logged_at missing or not a timestamp'
            when model_id is null then 'model_id missing'
            when is_record_line and record_index is null then 'record_index missing or not an integer'
            when not has_records then 'records missing or not an array'
            when not has_predictions then 'predictions missing or not an array'
            when count_records = 0 then 'records is empty'
            when count_records <> count_predictions
                then count_records || ' records but ' || count_predictions || ' predictions'
            when not has_inputs then 'records[' || record_index || '] is not an object'
            when score is null then 'predictions[' || record_index || '] has no score, prediction or probabilities'
            when field_error is not null then field_error
            {%- if event_key %}
            when event_key is null then 'records[' || record_index || '].{{ event_key | replace("'", "''") }} missing'
            {%- endif %}
            {%- if event_time %}
            when event_at is null then 'records[' || record_index || '].{{ event_time | replace("'", "''") }} missing or not a timestamp'
            {%- endif %}
        end as malformed_reason,
        malformed_reason is not null as is_malformed,
        request_id,
        record_index,
        logged_at,
        model_id,
        score,
        label,
        served_features,
        record,
        record_utc,
        event_key,
        event_at
    from parsed
)

select * from final
